-- When a rollout woke the paused sandbox it updates ("wake paused sandboxes"): it is paused again
-- afterwards unless its user came back since. Kept in the store so a new leader pauses it too.
ALTER TABLE rollout_items ADD COLUMN woken_at TIMESTAMPTZ;
