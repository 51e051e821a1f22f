-- Single sign-on: the states of authorization responses already used (a replayed callback is refused
-- by every worker and replica), and every link of a provider's subject to a user (the audit trail).
CREATE TABLE sso_states (
    digest TEXT PRIMARY KEY,                 -- hex SHA-256 of the state, never the state
    expires_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX sso_states_expires_at_idx ON sso_states (expires_at);

CREATE TABLE identity_links (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TIMESTAMPTZ NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
    user_id UUID NOT NULL,                   -- no foreign key: the trail outlives a deleted user
    provider TEXT NOT NULL,                  -- oidc, workos, email_code
    subject TEXT NOT NULL,                   -- the provider's id for the person
    email TEXT NOT NULL,
    how TEXT NOT NULL CONSTRAINT identity_links_how_check CHECK (how IN ('created', 'email')),
    replaced TEXT                            -- another provider's subject this link replaced
);

CREATE INDEX identity_links_user_id_idx ON identity_links (user_id, at);
