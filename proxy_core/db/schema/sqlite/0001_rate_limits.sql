-- Counters of rate limiters shared by every worker and replica; `key` is a SHA-256 of what is counted.
CREATE TABLE rate_limits (
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    hits INTEGER NOT NULL,
    window_ends TIMESTAMPTZ NOT NULL,
    wait_until TIMESTAMPTZ,                  -- back-off: no hit is allowed before this
    PRIMARY KEY (name, key)
);

CREATE INDEX rate_limits_window_ends_idx ON rate_limits (window_ends);
