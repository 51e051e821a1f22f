-- Template rollouts: one row per rollout, one item per sandbox it updates. The leader that drives
-- them keeps every step here, so another replica (or this one after a restart) carries on.
CREATE TABLE manage_settings (
    key text PRIMARY KEY,
    value text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rollouts (
    id uuid PRIMARY KEY,
    target_version text NOT NULL,
    concurrency integer NOT NULL,
    wake_paused boolean NOT NULL,
    state text NOT NULL,
    created_by uuid,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    finished_at timestamptz
);

CREATE TABLE rollout_items (
    rollout_id uuid NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
    user_id uuid NOT NULL,
    state text NOT NULL,
    step text,
    percent integer NOT NULL DEFAULT 0,
    previous_version text,
    message text,
    started_at timestamptz,
    finished_at timestamptz,
    PRIMARY KEY (rollout_id, user_id)
);
