-- Who did what to whom, and when: admin actions, key changes, sign-ins.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TIMESTAMPTZ NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
    actor_user_id UUID,
    action TEXT NOT NULL,
    target_user_id UUID,
    detail JSONB NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_target_user_id_idx ON audit_log (target_user_id, at);
