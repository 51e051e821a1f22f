CREATE TABLE users (
    id UUID PRIMARY KEY,
    external_id TEXT,  -- WorkOS user id / OIDC subject
    email TEXT NOT NULL,
    name TEXT,
    role TEXT NOT NULL DEFAULT 'member' CONSTRAINT users_role_check CHECK (role IN ('member', 'admin')),
    disabled BOOLEAN NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
    CONSTRAINT users_external_id_key UNIQUE (external_id)
);

CREATE UNIQUE INDEX users_email_key ON users (lower(email));
