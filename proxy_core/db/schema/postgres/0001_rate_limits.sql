-- Counters of rate limiters shared by every worker and replica; `key` is a SHA-256 of what is counted.
CREATE TABLE rate_limits (
    name text NOT NULL,
    key text NOT NULL,
    hits integer NOT NULL,
    window_ends timestamptz NOT NULL,
    wait_until timestamptz,                  -- back-off: no hit is allowed before this
    PRIMARY KEY (name, key)
);

CREATE INDEX rate_limits_window_ends_idx ON rate_limits (window_ends);
