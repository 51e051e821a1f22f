-- What the router needs to reach and explain a sandbox: the provider's handle data (JSON), the app's
-- per-sandbox token (never the virtual key), start progress for every replica's progress page, when
-- the healer last reported, and each state change (running hours for the Manage UI).
ALTER TABLE sandboxes ADD COLUMN handle_data text;
ALTER TABLE sandboxes ADD COLUMN app_token text;
ALTER TABLE sandboxes ADD COLUMN progress_step text;
ALTER TABLE sandboxes ADD COLUMN progress_percent integer;
ALTER TABLE sandboxes ADD COLUMN healer_at timestamptz;
ALTER TABLE sandboxes ADD COLUMN state_changed_at timestamptz;

CREATE TABLE sandbox_events (
    id bigserial PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    state text NOT NULL,
    reason text,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sandbox_events_user_idx ON sandbox_events (user_id, at);
