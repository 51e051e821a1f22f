-- Admin API tokens: only a SHA-256 hash and a display prefix are kept; the token acts as its admin,
-- whose role is checked again on every use.
CREATE TABLE admin_tokens (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL,
    name text NOT NULL,
    prefix text NOT NULL,
    token_hash text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at timestamptz
);

CREATE INDEX admin_tokens_user_id_idx ON admin_tokens (user_id);
