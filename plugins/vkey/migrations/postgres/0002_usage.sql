-- One row per gateway request, written in batches. No foreign keys: a batch must never fail as a
-- whole because one user or key was deleted meanwhile, and usage history outlives both.
CREATE TABLE usage (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id uuid NOT NULL,
    key_id uuid,
    provider text NOT NULL,
    model text NOT NULL DEFAULT '',
    tokens_in bigint NOT NULL DEFAULT 0,
    tokens_out bigint NOT NULL DEFAULT 0,
    cached_tokens bigint NOT NULL DEFAULT 0,
    cache_write_tokens bigint NOT NULL DEFAULT 0,
    cost_usd double precision,          -- NULL: the model has no known price
    status integer NOT NULL,
    latency_ms integer NOT NULL DEFAULT 0,
    reported boolean NOT NULL DEFAULT true,  -- false: the provider reported no usage
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX usage_user_id_created_at_idx ON usage (user_id, created_at);
