-- One row per gateway request, written in batches. No foreign keys: a batch must never fail as a
-- whole because one user or key was deleted meanwhile, and usage history outlives both.
CREATE TABLE usage (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id UUID NOT NULL,
    key_id UUID,
    provider TEXT NOT NULL,
    model TEXT NOT NULL DEFAULT '',
    tokens_in INTEGER NOT NULL DEFAULT 0,
    tokens_out INTEGER NOT NULL DEFAULT 0,
    cached_tokens INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL,                      -- NULL: the model has no known price
    status INTEGER NOT NULL,
    latency_ms INTEGER NOT NULL DEFAULT 0,
    reported BOOLEAN NOT NULL DEFAULT 1,  -- 0: the provider reported no usage
    created_at TIMESTAMPTZ NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'))
);

CREATE INDEX usage_user_id_created_at_idx ON usage (user_id, created_at);
