-- sources: the ones a newsletter selected, by id.
SELECT id, name, feed_url, active FROM sources WHERE id = ANY(CAST(:ids AS integer[])) ORDER BY id
