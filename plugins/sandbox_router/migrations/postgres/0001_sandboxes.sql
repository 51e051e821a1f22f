CREATE TABLE sandboxes (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider text NOT NULL,
    provider_sandbox_id text,
    host text,
    state text NOT NULL DEFAULT 'provisioning' CONSTRAINT sandboxes_state_check
        CHECK (state IN ('provisioning', 'running', 'paused', 'resuming', 'upgrading', 'error', 'broken')),
    template_version text,
    healer_status text,
    healer_message text,
    error_message text,
    last_activity_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sandboxes_user_id_key UNIQUE (user_id)
);

-- The idle pauser's question: running sandboxes with no activity since a moment.
CREATE INDEX sandboxes_state_idx ON sandboxes (state, last_activity_at);
