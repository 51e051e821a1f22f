CREATE TABLE users (
    id uuid PRIMARY KEY,
    external_id text,  -- WorkOS user id / OIDC subject
    email text NOT NULL,
    name text,
    role text NOT NULL DEFAULT 'member' CONSTRAINT users_role_check CHECK (role IN ('member', 'admin')),
    disabled boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_external_id_key UNIQUE (external_id)
);

CREATE UNIQUE INDEX users_email_key ON users (lower(email));
