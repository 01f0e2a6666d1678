-- Rate limits: one counter per caller and action ("enqueue:tenant:acme", "stream:ip:203.0.113.7"),
-- counted in fixed windows of the database's clock, so every instance counts the same
-- requests. UNLOGGED: a counter is not worth a WAL record per request, and one lost in a
-- crash only forgets a minute of counting.
CREATE UNLOGGED TABLE rate_limits (
    bucket       text PRIMARY KEY CHECK (length(bucket) <= 300),
    window_start timestamptz NOT NULL,
    hits         integer NOT NULL
);
