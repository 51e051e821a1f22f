-- What the router needs to reach and explain a sandbox: the provider's handle data (JSON), the app's
-- per-sandbox token (never the virtual key), start progress for every replica's progress page, when
-- the healer last reported, and each state change (running hours for the Manage UI).
ALTER TABLE sandboxes ADD COLUMN handle_data TEXT;
ALTER TABLE sandboxes ADD COLUMN app_token TEXT;
ALTER TABLE sandboxes ADD COLUMN progress_step TEXT;
ALTER TABLE sandboxes ADD COLUMN progress_percent INTEGER;
ALTER TABLE sandboxes ADD COLUMN healer_at TIMESTAMPTZ;
ALTER TABLE sandboxes ADD COLUMN state_changed_at TIMESTAMPTZ;

CREATE TABLE sandbox_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    reason TEXT,
    at TIMESTAMPTZ NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'))
);
CREATE INDEX sandbox_events_user_idx ON sandbox_events (user_id, at);
