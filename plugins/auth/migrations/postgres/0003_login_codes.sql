-- Pending email sign-in codes, shared by every worker and replica; one per address, a new code
-- replaces the old one. Only the keyed HMAC of the code is kept, never the code.
CREATE TABLE login_codes (
    email text PRIMARY KEY,                  -- lower-cased
    digest text NOT NULL,                    -- hex HMAC-SHA256 of email and code
    expires_at timestamptz NOT NULL,
    attempts_left integer NOT NULL,          -- wrong guesses still allowed; void at 0
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX login_codes_expires_at_idx ON login_codes (expires_at);
