-- Server-side browser sessions; the cookie carries only the random id.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
    last_seen_at TIMESTAMPTZ NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
    expires_at TIMESTAMPTZ NOT NULL,         -- absolute end
    idle_expires_at TIMESTAMPTZ NOT NULL,    -- last_seen_at + idle timeout, moved on each visit
    revoked_at TIMESTAMPTZ,
    data JSONB NOT NULL DEFAULT '{}'         -- provider tokens and the like
);

CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);
