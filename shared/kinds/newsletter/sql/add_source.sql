-- sources: add one, or update the feed of the one with that name (demo seeding relies on it).
INSERT INTO sources (name, feed_url, active) VALUES (:name, :feed_url, true)
ON CONFLICT (name) DO UPDATE SET feed_url = EXCLUDED.feed_url, active = true
RETURNING id, name, feed_url, active
