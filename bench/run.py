"""make bench: the queue measured against PostgreSQL's own limit, as ratios taken side by side.

Runs on a throwaway PostgreSQL with durable settings (fsync and synchronous_commit on).
These machines are shared and noisy, so every figure is the median of several runs, and the
headline figures are ratios against an ideal measured in the same run. Writes
build/bench.json and docs/benchmarks.md (bench/report.py), and prints the page.

One module per scenario (each has a `measure`): throughput, cold_start, process_http,
enqueue, propagation, streams, cancel, writer, tasks_path, listen_peer, big_table, pressure.

    python -m bench.run [--quick] [--only NAME,... [--merge]]

--quick runs fewer jobs and repeats; --only runs the named scenarios and prints their
figures. Neither writes build/bench.json or the published page, except --only with --merge: the named
scenarios' figures replace theirs in build/bench.json (a full run's), and the page is written
from the whole, its header naming what was measured again and when (after a change that
touches some scenarios, without a second hour of Pressure).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from bench import (
    big_table,
    cancel,
    cold_start,
    enqueue,
    listen_peer,
    pressure,
    process_http,
    propagation,
    report,
    streams,
    tasks_path,
    throughput,
    writer,
)
from bench.common import HANDLERS, fresh_database
from bench.scale.report import replace_section, section_of
from local import postgres
from local.functions import NO_RATE_LIMITS, REPO
from local.stack import Stack
from shared.core.settings import Settings

OUT = REPO / "build" / "bench.json"
PAGE = REPO / "docs" / "benchmarks.md"
WITHOUT_STACK = ("throughput", "cold_start", "tasks_path", "listen_peer", "big_table", "pressure")
ON_THE_STACK = ("process_http", "enqueue", "propagation", "streams", "cancel", "writer")
STACK_ENV = {
    "JOB_HANDLERS": HANDLERS,
    "THREADS": "120",
    "MAX_OPEN_STREAMS": "110",
    "MAX_STREAMS_PER_CALLER": "110",  # every stream comes from this one address
    "DB_POOL_SIZE": "10",
    "ENQUEUE_KINDS": "*",
    # One caller makes every request: measure the queue, not the rate limits.
    **NO_RATE_LIMITS,
}


def sizes(quick: bool) -> dict:
    """How much each scenario does: a full run, or a smoke run."""
    if quick:
        return {"jobs": 1000, "repeats": 1, "rows_large": 50_000, "cold_repeats": 1, "enqueues": 200,
                "progress_events": 60, "cancels": 5, "writer_samples": 2, "pressure_checkpoints": (2000, 6000), "tasks_samples": 30, "baseline_seconds": 2}  # fmt: skip
    return {"jobs": 5000, "repeats": 3, "rows_large": 1_000_000, "cold_repeats": 3, "enqueues": 1000,
            "progress_events": 300, "cancels": 30, "writer_samples": 5, "pressure_checkpoints": (10_000, 50_000, 100_000), "tasks_samples": 200, "baseline_seconds": 5}  # fmt: skip


def run_on_stack(results: dict, server: postgres.PostgresServer, url: str, size: dict, wanted: set[str]) -> None:
    stack = Stack.on_free_ports(
        database_url=url,
        extra_env=STACK_ENV,
        scheduler=False,
        log_dir=Path(tempfile.mkdtemp(prefix="jobqueue-bench-")),
        gemini_port=0 if "writer" in wanted else None,  # newsletters written through the emulator
    )
    settings = Settings.from_env(stack.env)  # what the functions run with, for the report's prose
    results["settings"] = {
        "cancel_check_seconds": settings.cancel_check_seconds,
        "stream_keepalive_seconds": settings.stream_keepalive_seconds,
    }
    with stack:
        if "process_http" in wanted:
            print("process through HTTP (4 callers)", flush=True)
            results["http_process_per_s"] = process_http.measure(stack, url, size["jobs"] // 5, size["repeats"])
        if "enqueue" in wanted:
            print("enqueue over HTTP", flush=True)
            results["enqueue"] = enqueue.measure(stack, server, size["enqueues"], size["baseline_seconds"])
        if "propagation" in wanted:
            print("status propagation", flush=True)
            results["propagation"] = propagation.measure(stack, size["progress_events"])
        if "streams" in wanted:
            print("database cost of open streams", flush=True)
            results["stream_queries_per_s"] = streams.measure(stack, url)
        if "cancel" in wanted:
            print("cancel latency", flush=True)
            results["cancel"] = cancel.measure(stack, size["cancels"])
        if "writer" in wanted:
            print("newsletter writer: first preview and cancel", flush=True)
            results["writer"] = writer.measure(stack, size["writer_samples"])


def run(server: postgres.PostgresServer, url: str, size: dict, wanted: set[str]) -> dict:
    results: dict = {}
    if "throughput" in wanted:
        print("core throughput (jobs/s, median of runs; ideal = bare pg8000 loop of the same two statements)")
        results["core_throughput"] = throughput.measure(url, size["jobs"], size["repeats"])
        print("one worker, the runner's obligations added one at a time", flush=True)
        results["core_ladder"] = throughput.ladder(url, size["jobs"], size["repeats"])
    if "cold_start" in wanted:
        print("cold start", flush=True)
        results["cold_start"] = cold_start.measure(url, size["cold_repeats"])
        results["framework_import_ms"] = cold_start.framework_import_ms(url, size["cold_repeats"])
        results["first_enqueue_with_tasks_ms"] = cold_start.first_enqueue_with_tasks_ms(url, size["cold_repeats"])
        results["first_enqueue_steps"] = cold_start.first_enqueue_steps(url, size["cold_repeats"])
    if "tasks_path" in wanted:
        print("the Cloud Tasks path, enqueue to handler start", flush=True)
        results["tasks_path"] = tasks_path.measure(url, size["tasks_samples"])
    if "listen_peer" in wanted and (peer := listen_peer.measure(server, size["tasks_samples"])) is not None:
        print("PgQueuer's LISTEN worker, enqueue to handler start (the Tasks path's peer)", flush=True)
        results["listen_peer"] = peer
    if wanted & set(ON_THE_STACK):
        run_on_stack(results, server, url, size, wanted)
    if "big_table" in wanted:
        print("claim and sweep on a big table", flush=True)
        results["scale"] = big_table.measure(url, size["rows_large"])
    if "pressure" in wanted:
        print("pressure: the claim while vacuum is held back", flush=True)
        results["pressure"] = pressure.measure(url, size["pressure_checkpoints"])
    return results


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer jobs and repeats (a smoke run)")
    parser.add_argument("--only", help="comma-separated scenarios: " + ", ".join(WITHOUT_STACK + ON_THE_STACK))
    parser.add_argument("--merge", action="store_true", help="with --only: into build/bench.json, and write the page")
    args = parser.parse_args()
    if args.merge and (not args.only or args.quick or not OUT.exists()):
        parser.error("--merge needs --only, a full run's build/bench.json, and no --quick")
    wanted = set(args.only.split(",")) if args.only else set(WITHOUT_STACK + ON_THE_STACK)
    unknown = wanted - set(WITHOUT_STACK + ON_THE_STACK)
    if unknown:
        parser.error(f"no scenario named {', '.join(sorted(unknown))}")
    server = postgres.throwaway_server(durable=True, options=streams.SERVER_OPTIONS)
    results: dict = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "postgres": {"fsync": "on", "synchronous_commit": "on"},
    }
    try:
        results.update(run(server, fresh_database(server, "bench"), sizes(args.quick), wanted))
    finally:
        server.stop()
        postgres.remove(server)
    if args.merge:
        results = merged(json.loads(OUT.read_text()), results, sorted(wanted))
    if args.only and not args.merge:
        print(json.dumps(results, indent=2, default=float))
        return 0
    page = report.markdown(results)
    if publishes(args.quick, args.only, args.merge):
        OUT.parent.mkdir(exist_ok=True)
        OUT.write_text(json.dumps(results, indent=2, default=float))
        kept = ["## Scale"] + (["## Pressure"] if args.merge and "pressure" not in wanted else [])
        PAGE.write_text(keeping_sections(page, PAGE.read_text() if PAGE.exists() else "", kept))
    print(page)
    return 0


def publishes(quick: bool, only: str | None, merge: bool) -> bool:
    """Whether a run writes build/bench.json and the page: a full run, or --only with --merge.
    A smoke run or a run of some scenarios only prints: build/bench.json stays the last full
    run's, which --merge builds on (an --only run that overwrote it once left --merge only its
    own figures to merge into)."""
    return not quick and (only is None or merge)


def merged(full: dict, again: dict, scenarios: list[str], command: str | None = None) -> dict:
    """A full run's results with some scenarios measured again: their figures replace the
    full run's, and `remeasured` says which and when (the page's header names them, and
    `command` when they were measured some other way than this module's --merge)."""
    figures = {key: value for key, value in again.items() if key not in ("date", "machine", "postgres")}
    earlier = [entry for entry in full.get("remeasured", []) if not set(entry["scenarios"]) <= set(scenarios)]
    entry = {"date": again["date"], "scenarios": scenarios, **({"command": command} if command else {})}
    return {**full, **figures, "remeasured": [*earlier, entry]}


def keeping_sections(page: str, published: str, headings: list[str]) -> str:
    """The new page, with the published page's sections under `headings` kept as they were:
    "## Scale" is `make scale`'s, which this run does not measure, and a merge that did not
    measure Pressure keeps its section, the note of how it was run included."""
    for heading in headings:
        if (section := section_of(published, heading)) is not None:
            page = replace_section(page, section)
    return page


if __name__ == "__main__":
    sys.exit(main())
