-- rate limit housekeeping: the counters of windows that ended (their callers went quiet).
DELETE FROM rate_limits
WHERE window_start < now() - make_interval(secs => CAST(:window_seconds AS integer))
