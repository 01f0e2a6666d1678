-- sources: delete one for good.
DELETE FROM sources WHERE id = :id RETURNING id, name, feed_url, active
