"""Where one bulk request's time goes: a request of 1,000 jobs, end to end over real HTTP
through functions-framework, with the enqueue function served in this process (its app from
functions-framework, on werkzeug's server, one thread) so that cProfile sees the server side.

    python -m bench.bulk_profile [--requests N] [--top N]

Prints the client's wall time per request (median), the server's share, and the functions
that took the server's time (cumulative, in the serving thread's CPU time: on a shared machine
the wall time mostly measures the neighbours), on a durable throwaway PostgreSQL.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import threading
import time

import httpx

from bench.common import AUTH, HANDLERS, fresh_database, median
from local import postgres
from local.functions import NO_RATE_LIMITS, function_source
from local.stack import DEV_TOKEN

BULK = 1000


def body(request: int) -> dict:
    return {"jobs": [{"kind": "noop", "n": number, "request": request} for number in range(BULK)]}


def serve(url: str, profile: cProfile.Profile, timings: list[tuple[float, float]]):
    """The enqueue function's functions-framework app on a free loopback port: (server, url)."""
    from werkzeug.serving import make_server  # noqa: PLC0415

    os.environ.update(
        {"DATABASE_URL": url, "JOB_HANDLERS": HANDLERS, "ENQUEUE_KINDS": "*", "API_TOKEN": DEV_TOKEN, **NO_RATE_LIMITS}
    )
    import functions_framework  # noqa: PLC0415

    app = functions_framework.create_app("enqueue", str(function_source("enqueue")))
    inner = app.wsgi_app

    def profiled(environ, start_response):
        started, cpu = time.perf_counter(), time.thread_time()
        profile.enable()
        try:
            return list(inner(environ, start_response))
        finally:
            profile.disable()
            timings.append(((time.perf_counter() - started) * 1000, (time.thread_time() - cpu) * 1000))

    app.wsgi_app = profiled
    server = make_server("127.0.0.1", 0, app, threaded=False)
    return server, f"http://127.0.0.1:{server.server_port}/"


PHASES = (  # (module, attribute): each timed inclusively, in wall and in the thread's CPU time
    ("main", "read_body"),
    ("main", "bulk_requests"),
    ("shared.core.queue", "enqueue_many"),
    ("shared.core.queue", "_bulk_row"),
    ("shared.core.queue", "_insert_bulk"),
    ("shared.core.db.session", "Session.rows"),
    ("shared.core.queue", "_inserted_job"),
    ("main", "bulk_answer"),
    ("shared.web.service", "Service.json"),
)


def time_phases(totals: dict[str, list[float]]) -> None:
    """Wrap each of PHASES so that every call adds its wall and CPU milliseconds to `totals`."""
    import importlib  # noqa: PLC0415

    for module_name, attribute in PHASES:
        owner = importlib.import_module(module_name) if module_name != "main" else sys.modules["main"]
        *path, name = attribute.split(".")
        for part in path:
            owner = getattr(owner, part)
        original = getattr(owner, name)
        totals[attribute] = [0.0, 0.0]

        def timed(*args, _original=original, _total=totals[attribute], **kwargs):
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return _original(*args, **kwargs)
            finally:
                _total[0] += (time.perf_counter() - wall) * 1000
                _total[1] += (time.thread_time() - cpu) * 1000

        setattr(owner, name, timed)


class Unprofiled:
    def enable(self) -> None:
        pass

    disable = create_stats = enable


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--no-profile", action="store_true", help="time only (cProfile slows Python code)")
    parser.add_argument("--phases", action="store_true", help="time the steps of the bulk path (implies --no-profile)")
    args = parser.parse_args()
    args.no_profile = args.no_profile or args.phases
    phases: dict[str, list[float]] = {}
    pg = postgres.throwaway_server(durable=True)
    try:
        profile, server_ms = (Unprofiled() if args.no_profile else cProfile.Profile()), []
        server, url = serve(fresh_database(pg, "bulk_profile"), profile, server_ms)
        if args.phases:
            time_phases(phases)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        client_ms = []
        with httpx.Client(timeout=60) as http:
            http.post(url, json=body(-1), headers=AUTH).raise_for_status()  # warm: plans, pages, imports
            profile.create_stats()
            profile.__init__()  # forget the warm-up request (the imports, the plans)
            server_ms.clear()
            for total in phases.values():
                total[:] = [0.0, 0.0]
            for request in range(args.requests):
                started = time.perf_counter()
                answer = http.post(url, json=body(request), headers=AUTH)
                client_ms.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200 and {job["status"] for job in answer.json()["jobs"]} == {202}
        server.shutdown()
        print(f"load average {os.getloadavg()}")
        print(f"client: {median(client_ms):.1f} ms per request of {BULK} (median of {args.requests})")
        print(
            f"server: {median([wall for wall, _ in server_ms]):.1f} ms, of which on the CPU (its thread) "
            f"{median([cpu for _, cpu in server_ms]):.1f} ms"
        )
        for attribute, (wall, cpu) in phases.items():
            print(f"  {attribute:<16} {wall / args.requests:7.1f} ms, CPU {cpu / args.requests:6.1f} ms per request")
        if args.no_profile:
            return
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(args.top)
        print(out.getvalue())
    finally:
        pg.stop()
        postgres.remove(pg)


if __name__ == "__main__":
    main()
