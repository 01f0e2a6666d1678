"""make scale's report: the "Scale" section of docs/benchmarks.md, each figure beside its
target."""

from __future__ import annotations

import json

from bench.scale.load import PROGRESS_EVERY_SECONDS, STALLED_AFTER_SECONDS, kill_at


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def markdown(results: dict) -> str:
    wait, scale, settings = results["wait"], results["scale"], results["settings"]
    heartbeat_limit = settings["HEARTBEAT_SECONDS"] + 5
    p99 = scale["cancelLatencyP99Ms"]
    rows = [
        ("jobs running at once (peak)", f"{scale['runningAtOncePeak']} of {scale['jobs']}", "1,000"),
        (
            "database connections, peak: in total / per process instance",
            f"{scale['connectionsPeak']} / {scale['connectionsPerInstancePeak']}",
            f"≤ 3 per instance: {verdict(scale['connectionsPerInstancePeak'] <= 3)}",
        ),
        (
            f"transactions/s per running job while handlers wait ({wait['jobs']} jobs, one instance)",
            f"{wait['transactionsPerSecondPerJob']}",
            f"≤ 0.1: {verdict(wait['transactionsPerSecondPerJob'] <= 0.1)}",
        ),
        (
            "transactions/s per instance for checks and heartbeats, same run",
            f"{wait['transactionsPerSecondPerInstance']}",
            f"≤ 3: {verdict(wait['transactionsPerSecondPerInstance'] <= 3)}",
        ),
        (
            "heartbeat age, max over running jobs: handlers only waiting / scale run (progress every 5 s)",
            f"{wait['heartbeatAgeMaxSeconds']} / {scale['heartbeatAgeMaxSeconds']} s",
            f"≤ {heartbeat_limit:g} s: {verdict(max(wait['heartbeatAgeMaxSeconds'], scale['heartbeatAgeMaxSeconds']) <= heartbeat_limit)}",
        ),
        (
            f"cancel latency p50 / p99 ({scale['cancelSamples']} running jobs cancelled)",
            f"{scale['cancelLatencyP50Ms']} / {p99} ms",
            f"p99 ≤ 1 s: {verdict(p99 is not None and p99 <= 1000)}",
        ),
        (
            "resident memory per running job beyond the base, median / max of instances",
            f"{scale['memoryPerJobMbMedian']} / {scale['memoryPerJobMbMax']} MB",
            f"≤ 1 MB: {verdict((scale['memoryPerJobMbMax'] or 0) <= 1)}",
        ),
        ("jobs lost", f"{scale['lost']}", f"0: {verdict(scale['lost'] == 0)}"),
        (
            "jobs whose handler ran to completion twice (ledger)",
            f"{scale['completedTwice']}",
            f"0: {verdict(scale['completedTwice'] == 0)}",
        ),
    ]
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    return f"""## Scale

Measured {results["at"]} by `make scale` on {results["cores"]} cores (shared with other work), PostgreSQL with
fast settings. {scale["jobs"]} ledger jobs (`bench/ledger.py`) of about {results["jobSeconds"]:g} s each, progress
every {PROGRESS_EVERY_SECONDS:g} s, sent at once to {scale["instances"]} process instances (functions-framework,
{results["threads"]} threads each, `DB_POOL_SIZE` 2); {scale["cancelled"]} cancelled at random moments; one
instance SIGKILLed at {kill_at(results["jobSeconds"]):g} s, its jobs requeued by sweep (`STALLED_AFTER_SECONDS` {STALLED_AFTER_SECONDS}) and run
by the others. Before that, the wait phase: {wait["jobs"]} jobs on one instance whose handlers only wait,
default settings, every statement counted with pg_stat_statements over {wait["windowSeconds"]:g} s. The run took
{scale["seconds"]:g} s; final states {json.dumps(scale["final"])}; {scale["runs"]} handler runs in the ledger; the
instances were busy for {scale["instanceSeconds"]} instance-seconds in all (from each one's first ledger row to its
last), against {scale["jobs"] * results["jobSeconds"]:g} job-seconds of work.

| measure | figure | target |
| --- | --- | --- |
{table}

"""


def replace_section(document: str, section: str) -> str:
    """The section under `section`'s heading (its first line, "## Scale" by default) replaced,
    or added at the end; every other section kept."""
    start, end = section_span(document, section.split("\n", 1)[0])
    if start < 0:
        return document.rstrip("\n") + "\n\n" + section
    return document[:start] + section + document[end:]


def section_of(document: str, heading: str) -> str | None:
    """The section under the line `heading` (up to the next "## "), or None."""
    start, end = section_span(document, heading)
    return None if start < 0 else document[start:end]


def section_span(document: str, heading: str) -> tuple[int, int]:
    """Where the section under the line `heading` starts and ends in `document`; (-1, -1)."""
    line = heading + "\n"
    if document.startswith(line):
        start = 0
    elif (found := document.find("\n" + line)) >= 0:
        start = found + 1
    else:
        return -1, -1
    following = document.find("\n## ", start + 1)
    return start, len(document) if following < 0 else following + 1
