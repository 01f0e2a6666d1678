"""The bench's fixed baseline (bench/sql/, frozen on purpose) still runs on today's schema and
does the work the runner does: every job claimed once under a lease, completed through the
fence, with its two status events. If a migration breaks it, update it for the schema only."""

import multiprocessing

from bench.throughput import _ideal_worker, plain_statements
from shared.core import queue


def test_the_frozen_baseline_drains_the_queue_as_the_runner_would(session, registry, database_url):
    jobs = [
        queue.enqueue(session, registry, kind="noop", payload={"n": n}, tenant=tenant)[0]
        for n, tenant in enumerate(["globex", "acme", "acme"])
    ]
    drained = multiprocessing.Value("i", 0)
    _ideal_worker(plain_statements(), database_url, drained)
    assert drained.value == len(jobs)
    for job in jobs:
        ended = queue.get_job(session, job.id)
        assert (ended.job_status, ended.attempts, ended.worker_token, ended.result) == ("completed", 1, None, None)
        statuses = [event.data["jobStatus"] for event in queue.list_events(session, job.id) if event.kind == "status"]
        assert statuses[-2:] == ["running", "completed"]
