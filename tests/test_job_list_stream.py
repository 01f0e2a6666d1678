"""The live list's edges, driven directly: notifications lost (a listener reconnect, or more
than a feed holds) and a listener that is down both end in a fresh snapshot, never in a
silently stale list."""

import json
import threading

from shared.core import queue
from shared.core.listing import JobFilter
from shared.core.notifier import FEED_CAPACITY, JobEvents, Notifier
from shared.core.settings import DatabaseTarget, Settings
from shared.web.job_list import JobListStream


def healthy_listener() -> JobEvents:
    listener = JobEvents(Notifier(DatabaseTarget(host="127.0.0.1", port=1)))
    listener._healthy.set()  # as if its LISTEN connection were up; it is fed by hand below
    return listener


def test_a_feed_hands_over_the_changed_ids_once():
    listener = healthy_listener()
    with listener.subscribed() as feed:
        listener._notify({"a", "b"})
        listener._notify({"b", "c"})
        assert listener.wait_for_jobs(feed, 1) == ({"a", "b", "c"}, False)
        assert listener.wait_for_jobs(feed, 0.01) == (set(), False)


def test_a_feed_that_overflows_or_misses_a_reconnect_reports_lost():
    listener = healthy_listener()
    with listener.subscribed() as feed:
        listener._notify({str(n) for n in range(FEED_CAPACITY + 1)})
        assert listener.wait_for_jobs(feed, 1) == (set(), True)
        listener._wake_everyone()  # what the listener does when its connection comes back
        assert listener.wait_for_jobs(feed, 1) == (set(), True)
        assert listener.wait_for_jobs(feed, 0.01) == (set(), False)


def test_a_feed_wakes_its_waiter_at_once(session):
    listener = healthy_listener()
    with listener.subscribed() as feed:
        taken = []
        waiter = threading.Thread(target=lambda: taken.append(listener.wait_for_jobs(feed, 30)))
        waiter.start()
        listener._notify({"job"})
        waiter.join(10)
        assert taken == [({"job"}, False)]


def snapshots(chunks) -> list[dict]:
    return [json.loads(chunk.split("data: ", 1)[1]) for chunk in chunks if chunk.startswith("event: snapshot")]


def test_with_the_listener_down_the_stream_polls_and_sends_a_fresh_snapshot_on_change(env, pool, registry):
    settings = Settings.from_env({**env, "STREAM_POLL_SECONDS": "0.05", "STREAM_MAX_SECONDS": "30"})
    down = JobEvents(Notifier(DatabaseTarget(host="127.0.0.1", port=1), timeout=0.5))  # nothing listens there
    stream = JobListStream(pool, down, settings, lambda job: job.to_json())
    chunks = stream.events(JobFilter("acme"), release=lambda: None)
    try:
        assert next(chunks).startswith("retry: ")
        assert snapshots([next(chunks)]) == [{"jobs": [], "nextCursor": None}]
        with pool.session() as session:
            job, _ = queue.enqueue(session, registry, kind="noop", payload={}, tenant="acme")
        fresh = snapshots([next(chunks)])  # the next chunk: unchanged polls send nothing
        assert [listed["id"] for listed in fresh[0]["jobs"]] == [job.id]
    finally:
        chunks.close()
        down.stop()
