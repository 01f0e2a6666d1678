-- sources: keep the row (old jobs name it) but refuse it in new newsletters.
UPDATE sources SET active = false WHERE id = :id RETURNING id, name, feed_url, active
