-- Only the SHA-256 of a key is stored (hex), with a short prefix to show in listings.
CREATE TABLE virtual_keys (
    id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key_hash TEXT NOT NULL CONSTRAINT virtual_keys_key_hash_key UNIQUE,
    prefix TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
    expires_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ,
    grace_until TIMESTAMPTZ,          -- a rotated-out key keeps working until then
    rpm_limit INTEGER,
    tokens_per_day INTEGER,
    monthly_budget_usd REAL
);

CREATE INDEX virtual_keys_user_id_idx ON virtual_keys (user_id);
