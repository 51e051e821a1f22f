-- Who did what to whom, and when: admin actions, key changes, sign-ins.
CREATE TABLE audit_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor_user_id uuid,
    action text NOT NULL,
    target_user_id uuid,
    detail jsonb NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_target_user_id_idx ON audit_log (target_user_id, at);
