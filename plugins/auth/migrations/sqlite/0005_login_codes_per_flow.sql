-- A code belongs to the sign-in flow (browser) that asked for it: asking again for the same address
-- from elsewhere adds a row instead of replacing this one. Pending codes live ten minutes: the old
-- table is dropped rather than converted (at worst someone asks for a new code).
DROP TABLE login_codes;

CREATE TABLE login_codes (
    email TEXT NOT NULL,                     -- lower-cased
    flow TEXT NOT NULL,                      -- the random id of the asking browser's flow cookie
    digest TEXT NOT NULL,                    -- hex HMAC-SHA256 of email and code
    expires_at TIMESTAMPTZ NOT NULL,
    attempts_left INTEGER NOT NULL,          -- wrong guesses still allowed; void at 0
    created_at TIMESTAMPTZ NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')),
    PRIMARY KEY (email, flow)
);

CREATE INDEX login_codes_expires_at_idx ON login_codes (expires_at);
