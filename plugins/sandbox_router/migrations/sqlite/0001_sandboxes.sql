CREATE TABLE sandboxes (
    id UUID PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider TEXT NOT NULL,
    provider_sandbox_id TEXT,
    host TEXT,
    state TEXT NOT NULL DEFAULT 'provisioning' CONSTRAINT sandboxes_state_check
        CHECK (state IN ('provisioning', 'running', 'paused', 'resuming', 'upgrading', 'error', 'broken')),
    template_version TEXT,
    healer_status TEXT,
    healer_message TEXT,
    error_message TEXT,
    last_activity_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
    CONSTRAINT sandboxes_user_id_key UNIQUE (user_id)
);

-- The idle pauser's question: running sandboxes with no activity since a moment.
CREATE INDEX sandboxes_state_idx ON sandboxes (state, last_activity_at);
