"""make scale's stack: a throwaway PostgreSQL (and PgBouncer with --pgbouncer), the local
stack, the process instances and the monitor; the run (bench/scale/load.py); the results in
build/scale.json and the report in docs/benchmarks.md. Everything it starts ends with it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import sys
from datetime import UTC, datetime

from bench import ledger
from bench.scale.load import STALLED_AFTER_SECONDS, drive
from bench.scale.monitor import Instance, Monitor
from bench.scale.options import arguments, rate_limits
from bench.scale.report import markdown, replace_section
from local import postgres
from local.pgbouncer import start_pgbouncer
from local.stack import REPO, Stack, wait_for_port
from shared.core.db import Session, connect
from shared.core.settings import Settings

OUT = REPO / "build" / "scale.json"
DOC = REPO / "docs" / "benchmarks.md"


def main() -> int:
    args = arguments()
    per_instance = -(-args.jobs // args.instances)
    threads = max(per_instance, args.wait_jobs) + 40  # room for the jobs sweep hands back
    settings = {"HEARTBEAT_SECONDS": 30.0, "CANCEL_CHECK_SECONDS": 0.5, "DB_POOL_SIZE": 2}
    server = postgres.throwaway_server(options="-c shared_preload_libraries=pg_stat_statements -c max_connections=400")
    bouncer = start_pgbouncer(server.port, pool_size=20) if args.pgbouncer else None
    through = (
        {"DATABASE_URL": bouncer.url_for("postgres"), "DATABASE_DIRECT_URL": server.url, "DB_POOLER": "transaction"}
        if bouncer
        else {}
    )
    log_dir = REPO / "build" / "scale-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack.on_free_ports(
        database_url=server.url,
        persistent=False,
        scheduler=False,
        log_dir=log_dir,
        extra_env={
            "JOB_HANDLERS": "ledger=bench.ledger:ledger_job",
            "STALLED_AFTER_SECONDS": str(STALLED_AFTER_SECONDS),
            "THREADS": "64",
            "MAX_OPEN_STREAMS": "10",
            **rate_limits(args),
            **through,
        },
    )
    instances: list[Instance] = []
    monitor = None
    try:
        stack.start()
        with contextlib.closing(Session(connect(Settings.from_env({"DATABASE_URL": server.url}).database))) as admin:
            admin.run_sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            ledger.install(admin)
        instances = [Instance(stack, postgres.free_port(), threads, log_dir) for _ in range(args.instances)]
        for instance in instances:
            wait_for_port(instance.port, timeout=60, process=instance.process)
        # Per instance: its connections to PostgreSQL and, with one, to the pooler.
        monitor = Monitor(server.url, {server.port, *([bouncer.port] if bouncer else [])}, instances)
        monitor.start()
        measured = asyncio.run(drive(stack, instances, monitor, args))
    finally:
        if monitor is not None:
            monitor.stop()
        for instance in instances:
            instance.stop()
        stack.stop()
        if bouncer is not None:
            bouncer.remove()
        server.stop(mode="immediate")
        postgres.remove(server)
    results = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "machine": platform.platform(),
        "jobSeconds": args.job_seconds,
        "threads": threads,
        "settings": settings,
        "through": "PgBouncer 1.18, transaction mode" if args.pgbouncer else "direct",
        **measured,
    }
    out = OUT.with_name("scale-pgbouncer.json") if args.pgbouncer else OUT
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    section = markdown(results)
    print(section)
    if not (args.no_doc or args.pgbouncer):
        DOC.write_text(replace_section(DOC.read_text(), section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
