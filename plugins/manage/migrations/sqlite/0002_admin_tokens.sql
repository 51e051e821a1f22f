-- Admin API tokens: only a SHA-256 hash and a display prefix are kept; the token acts as its admin,
-- whose role is checked again on every use.
CREATE TABLE admin_tokens (
    id UUID PRIMARY KEY,
    user_id UUID NOT NULL,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
    last_used_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ
);

CREATE INDEX admin_tokens_user_id_idx ON admin_tokens (user_id);
