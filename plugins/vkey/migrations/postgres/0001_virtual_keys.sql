-- Only the SHA-256 of a key is stored (hex), with a short prefix to show in listings.
CREATE TABLE virtual_keys (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key_hash text NOT NULL CONSTRAINT virtual_keys_key_hash_key UNIQUE,
    prefix text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    revoked_at timestamptz,
    grace_until timestamptz,          -- a rotated-out key keeps working until then
    rpm_limit integer,
    tokens_per_day bigint,
    monthly_budget_usd double precision
);

CREATE INDEX virtual_keys_user_id_idx ON virtual_keys (user_id);
