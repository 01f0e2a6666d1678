-- sources: every source, by id.
SELECT id, name, feed_url, active FROM sources ORDER BY id
