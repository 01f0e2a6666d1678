-- rate limit: count one request (or :weight things, such as the jobs of a bulk enqueue) in its
-- bucket's current window (windows start at whole multiples of the window length, on the
-- database's clock); a bucket whose window ended starts again. Answers the count and the
-- seconds until the window ends.
WITH now_window AS (
    SELECT to_timestamp(floor(extract(epoch FROM now()) / CAST(:window_seconds AS integer))
                        * CAST(:window_seconds AS integer)) AS started
)
INSERT INTO rate_limits AS counted (bucket, window_start, hits)
SELECT CAST(:bucket AS text), started, CAST(:weight AS integer) FROM now_window
ON CONFLICT (bucket) DO UPDATE
SET hits = CASE WHEN counted.window_start = EXCLUDED.window_start THEN counted.hits + EXCLUDED.hits
                ELSE EXCLUDED.hits END,
    window_start = EXCLUDED.window_start
RETURNING hits,
          extract(epoch FROM window_start + make_interval(secs => CAST(:window_seconds AS integer)) - now())
              AS seconds_left
