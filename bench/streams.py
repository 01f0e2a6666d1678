"""What an open status stream costs the database: statements per second per open stream on
an idle job, the baseline removed. Counted by pg_stat_statements (the run's server loads
it), which counts each statement as it ends."""

from __future__ import annotations

import time

import httpx

from bench.common import AUTH, session_for
from local.stack import Stack

STATEMENTS_RUN = (
    "SELECT CAST(coalesce(sum(calls), 0) AS bigint) FROM pg_stat_statements"
    " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND query NOT LIKE '%pg_stat_statements%'"
)
SERVER_OPTIONS = "-c shared_preload_libraries=pg_stat_statements"  # for the run's server


def cost_per_stream(stack: Stack, url: str, streams: int, seconds: float) -> float:
    job = httpx.post(
        stack.url("enqueue"), json={"kind": "noop", "runAt": "2999-01-01T00:00:00Z"}, headers=AUTH, timeout=30
    ).json()
    session = session_for(url)
    session.run_sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

    def statements_per_second() -> float:
        before = session.run_sql(STATEMENTS_RUN)[0][0]
        time.sleep(seconds)  # a measuring window, not a wait for something to happen
        return (session.run_sql(STATEMENTS_RUN)[0][0] - before - 1) / seconds  # our own first read

    baseline = statements_per_second()
    opened = []
    for _ in range(streams):
        http = httpx.Client(timeout=60)
        request = http.build_request("GET", stack.url("status"), params={"id": job["id"], "stream": "1"})
        response = http.send(request, stream=True)
        assert response.status_code == 200
        opened.append((http, response))
    time.sleep(2)  # let the streams settle past their first reads
    loaded = statements_per_second()
    for http, response in opened:
        response.close()
        http.close()
    session.close()
    return max(loaded - baseline, 0) / streams


def measure(stack: Stack, url: str, seconds: float = 20) -> dict:
    return {
        "1_stream": round(cost_per_stream(stack, url, 1, seconds), 3),
        "100_streams": round(cost_per_stream(stack, url, 100, seconds), 3),
    }
