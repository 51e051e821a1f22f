-- When each user last signed in (any method): set in the transaction that creates the session.
ALTER TABLE users ADD COLUMN last_sign_in_at TIMESTAMPTZ;
