-- Server-side browser sessions; the cookie carries only the random id.
CREATE TABLE sessions (
    id text PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,         -- absolute end
    idle_expires_at timestamptz NOT NULL,    -- last_seen_at + idle timeout, moved on each visit
    revoked_at timestamptz,
    data jsonb NOT NULL DEFAULT '{}'         -- provider tokens and the like
);

CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);
