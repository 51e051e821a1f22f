-- A code belongs to the sign-in flow (browser) that asked for it: asking again for the same address
-- from elsewhere adds a row instead of replacing this one. Pending codes live ten minutes: the old
-- table is dropped rather than converted (at worst someone asks for a new code).
DROP TABLE login_codes;

CREATE TABLE login_codes (
    email text NOT NULL,                     -- lower-cased
    flow text NOT NULL,                      -- the random id of the asking browser's flow cookie
    digest text NOT NULL,                    -- hex HMAC-SHA256 of email and code
    expires_at timestamptz NOT NULL,
    attempts_left integer NOT NULL,          -- wrong guesses still allowed; void at 0
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (email, flow)
);

CREATE INDEX login_codes_expires_at_idx ON login_codes (expires_at);
