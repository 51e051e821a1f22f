-- Template rollouts: one row per rollout, one item per sandbox it updates. The leader that drives
-- them keeps every step here, so another replica (or this one after a restart) carries on.
CREATE TABLE manage_settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'))
);

CREATE TABLE rollouts (
    id UUID PRIMARY KEY,
    target_version TEXT NOT NULL,
    concurrency INTEGER NOT NULL,
    wake_paused BOOLEAN NOT NULL,
    state TEXT NOT NULL,
    created_by UUID,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ
);

CREATE TABLE rollout_items (
    rollout_id UUID NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    user_id UUID NOT NULL,
    state TEXT NOT NULL,
    step TEXT,
    percent INTEGER NOT NULL DEFAULT 0,
    previous_version TEXT,
    message TEXT,
    started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    PRIMARY KEY (rollout_id, user_id)
);
