"""Real concurrency: several workers, each with its own connection, drain one queue."""

import threading

from shared.core import queue
from shared.core.db import Pool
from shared.core.runner import Runner
from tests import handlers

JOBS = 2000
WORKERS = 8


def test_eight_workers_drain_two_thousand_jobs_each_exactly_once(settings, registry, session):
    tags = [f"drain-{i}" for i in range(JOBS)]
    for tag in tags:
        queue.enqueue(session, registry, kind="count", payload={"tag": tag})
    errors = []

    def work():
        pool = Pool(settings)  # each worker its own connection, as separate instances would be
        runner = Runner(pool, registry, settings)
        try:
            while runner.run_next() is not None:
                pass
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            pool.close()

    workers = [threading.Thread(target=work) for _ in range(WORKERS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert errors == []
    assert [handlers.RUNS[tag] for tag in tags] == [1] * JOBS
    rows = session.run_sql("SELECT job_status, attempts, count(*) FROM jobs GROUP BY 1, 2")
    assert [tuple(row) for row in rows] == [("completed", 1, JOBS)]
