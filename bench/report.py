"""docs/benchmarks.md from a run's results: the tables, the date and the machine, and what
the figures mean, written from the figures of that run. What moved the figures over time is
prose in docs/performance-notes.md, not here."""

from __future__ import annotations

# The targets each figure is held to (the issue's, not measurements).
TARGETS = {
    "core_ratio_1": 0.90,  # one worker, against the plain claim's ideal
    "core_ratio": 0.80,  # more workers
    "enqueue_p99_ms": 10,
    "bulk_jobs_per_s": 10_000,
    "propagation_p99_ms": 100,
    "cancel_p99_ms": 1000,
    "claim_ratio": 1.5,
    "first_answer_ms": 500,
    "writer_first_preview_ms": 2000,
    "writer_cancel_ms": 1000,
}


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _header(results: dict) -> list[str]:
    machine = results["machine"]
    return [
        "# Benchmarks",
        "",
        f"Measured {results['date']} by `make bench` on {machine['cores']} cores ({machine['platform']}, Python "
        f"{machine['python']}), PostgreSQL with fsync and synchronous_commit on. The machine is shared and noisy:",
        "each figure is the median of several runs, and throughput is a ratio against an ideal measured in the same run.",
        *(
            f"Measured again {entry['date']} (`{_command(entry)}`): {', '.join(entry['scenarios'])}."
            for entry in results.get("remeasured", [])
        ),
    ]


def _command(entry: dict) -> str:
    """How the scenarios were measured again: bench.run's --merge, or the command the entry names
    (a scenario's own module run alone, its figures merged with bench.run.merged)."""
    return entry.get("command") or f"python -m bench.run --only {','.join(entry['scenarios'])} --merge"


def _core_target(row: dict) -> float:
    return TARGETS["core_ratio_1"] if row["workers"] == 1 else TARGETS["core_ratio"]


def _core(results: dict) -> list[str]:
    lines = [
        "",
        "## Core throughput",
        "",
        "Claim, run a no-op handler, complete, draining jobs with N worker processes. Two ideals, measured in the same",
        "run: the simplest pg8000 loop of claim and complete with a plain claim (the first due job, no fairness), its",
        "SQL frozen in bench/sql/ so that it does not move with the queue's, and the same loop with the queue's own",
        "fair claim and completion. The runner is judged against the plain one, so that the fair claim's price shows;",
        '"fair / plain" is that price.',
        "",
        "| workers | plain ideal jobs/s | fair ideal jobs/s | fair / plain | runner jobs/s | runner / plain"
        f" | runner / fair | target: runner / plain ≥ {TARGETS['core_ratio_1']:.2f} (1), {TARGETS['core_ratio']:.2f} |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in results["core_throughput"]:
        lines.append(
            f"| {row['workers']} | {row['plain_jobs_per_s']} | {row['fair_jobs_per_s']} | {row['fair_price']:.2f}"
            f" | {row['core_jobs_per_s']} | {row['ratio']:.2f} | {row['fair_ratio']:.2f}"
            f" | {verdict(row['ratio'] >= _core_target(row))} |"
        )
    return lines + _ladder(results.get("core_ladder"))


def _ladder(steps: list[dict] | None) -> list[str]:
    """One worker, step by step: what each of the runner's obligations costs (older runs lack it)."""
    if not steps:
        return []
    lines = [
        "",
        "One worker, the plain loop with the runner's obligations added one at a time (the same run, interleaved):",
        "the job records a handler and the answer need, the two log lines the metrics count, the claim from a",
        "remembered floor. The last step's gap to the one before it is the runner's own machinery (lease keeper,",
        "watcher, pool, job context, fencing checks).",
        "",
        "| step | jobs/s | of the plain loop |",
        "| --- | --- | --- |",
    ]
    return lines + [f"| {step['step']} | {step['jobs_per_s']} | {step['of_plain']:.2f} |" for step in steps]


def _large_claim_key(scale: dict) -> str:
    return next(key for key in scale if key.startswith("claim_ms_") and key != "claim_ms_10k")


def _http_and_scale(results: dict) -> list[str]:
    enqueue, propagation, cancel, scale = (
        results["enqueue"],
        results["propagation"],
        results["cancel"],
        results["scale"],
    )
    streams = results["stream_queries_per_s"]
    large = scale[_large_claim_key(scale)]
    return [
        "",
        "## Over HTTP and at scale",
        "",
        "| measure | figure | target |",
        "| --- | --- | --- |",
        f"| process invocations/s, 4 callers, one no-op job each | {results['http_process_per_s']} | — |",
        f"| enqueue latency p50 / p99, warm server | {enqueue['p50_ms']} / {enqueue['p99_ms']} ms"
        f" | p99 ≤ {TARGETS['enqueue_p99_ms']} ms: {verdict(enqueue['p99_ms'] <= TARGETS['enqueue_p99_ms'])} |",
        f"| enqueue rate, 8 concurrent clients | {enqueue['rate_8_clients_per_s']}/s | — |",
        *_bulk(enqueue),
        f"| status propagation, progress call to SSE client, p50 / p99 | {propagation['p50_ms']} / {propagation['p99_ms']} ms"
        f" | p99 ≤ {TARGETS['propagation_p99_ms']} ms:"
        f" {verdict(propagation['p99_ms'] <= TARGETS['propagation_p99_ms'])} (the seed polled every 2 s) |",
        f"| database queries/s per open stream, idle job: 1 stream / 100 streams | {streams['1_stream']} / {streams['100_streams']} | — |",
        f"| cancel latency, cancel request sent to handler seeing ctx.cancelled, p50 / p99 | {cancel['p50_ms']} / {cancel['p99_ms']} ms"
        f" | p99 ≤ 1 s: {verdict(cancel['p99_ms'] <= TARGETS['cancel_p99_ms'])} |",
        f"| claim latency, 10k rows / {scale['rows_large']:,} rows (mostly finished) | {scale['claim_ms_10k']} / {large} ms"
        f" | ratio {scale['ratio']} ≤ {TARGETS['claim_ratio']}: {verdict(scale['ratio'] <= TARGETS['claim_ratio'])} |",
        f"| sweep over {scale['rows_large']:,} rows | {scale['sweep_ms_large']} ms | — |",
    ]


def _bulk(enqueue: dict) -> list[str]:
    """Bulk enqueue's rows: its rate, and pgbench's single-row INSERT beside it when the run had pgbench."""
    clients = enqueue.get("bulk_clients", 2)
    rows = [
        f"| bulk enqueue, requests of 1,000 jobs from {clients} clients | {enqueue['bulk_jobs_per_s']:,} jobs/s"
        f" | ≥ {TARGETS['bulk_jobs_per_s']:,}: {verdict(enqueue['bulk_jobs_per_s'] >= TARGETS['bulk_jobs_per_s'])} |",
    ]
    if "single_insert_per_s" in enqueue:
        before, after = enqueue["single_insert_runs_per_s"]
        rows += [
            f"| pgbench single-row INSERT into the jobs table, {clients} clients, same server, just before / after"
            f" | {before:,} / {after:,} per s | — |",
            f"| bulk enqueue / pgbench single-row INSERT (their mean) | {enqueue['bulk_over_single_insert']:.2f}× | — |",
        ]
    return rows


def _cold_start(results: dict) -> list[str]:
    target = TARGETS["first_answer_ms"]
    lines = [
        "",
        "## Cold start",
        "",
        "Import time of the function's module, time from starting functions-framework to its first answer, and the",
        "resident memory of the server (master and worker).",
        "",
        f"| function | import | first answer | memory | first answer ≤ {target} ms |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in results["cold_start"]:
        lines.append(
            f"| {row['function']} | {row['import_ms']} ms | {row['first_answer_ms']} ms | {row['rss_mb']} MB"
            f" | {verdict(row['first_answer_ms'] <= target)} |"
        )
    return lines


def _span(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.2f}" if low == high else f"{low:.2f} to {high:.2f}"


def _reading(results: dict) -> list[str]:
    """What the figures mean, in sentences whose figures all come from this run."""
    core = results["core_throughput"]
    single = next(row["ratio"] for row in core if row["workers"] == 1)
    more = [row["ratio"] for row in core if row["workers"] > 1]
    prices = [row["fair_price"] for row in core]
    settings, streams, cancel, scale = (
        results["settings"],
        results["stream_queries_per_s"],
        results["cancel"],
        results["scale"],
    )
    large = scale[_large_claim_key(scale)]
    imports = sorted(row["import_ms"] for row in results["cold_start"])
    claim = (
        f"a table of {scale['rows_large']:,} mostly finished jobs claimed in {large} ms against {scale['claim_ms_10k']} ms"
        f" for one of ten thousand ({scale['ratio']} times)"
    )
    return [
        "",
        "## Reading the figures",
        "",
        "- Throughput is bounded by PostgreSQL: two durable commits per job (claim, complete), each a round trip and",
        "  a WAL flush. The runner adds its lease watcher, the handler call, two JSON log lines and the job objects:",
        f"  it ran at {single:.2f} of the plain ideal with one worker and at {_span(more)} with more. What moved these",
        "  figures over time is told in [performance-notes.md](performance-notes.md).",
        f"- The fair claim ran at {_span(prices)} of the plain claim's speed: while one tenant waits it is the plain",
        "  claim plus one probe that finds no other tenant ([claim-design.md](claim-design.md)).",
        "- A status stream costs no polling: changes arrive by LISTEN/NOTIFY. With one stream open the database saw",
        f"  {streams['1_stream']} statements a second more, which is the instance's listening connection checking in",
        "  (shared by all its streams); each stream itself reads once per keep-alive interval"
        f" ({settings['stream_keepalive_seconds']:g} s), hence {streams['100_streams']} per stream with 100 open.",
        f"- A cancel reaches a job that has run a quarter of a second by notification (each process instance listens on"
        f" one connection while it has such a job), not by the job reading its row: p50 {cancel['p50_ms']} ms,"
        f" p99 {cancel['p99_ms']} ms, from the cancel request to the handler seeing ctx.cancelled. `CANCEL_CHECK_SECONDS`"
        f" ({settings['cancel_check_seconds']:g} s in this run) is the watcher's tick, which carries the cancel of a"
        " younger job, and every cancel while the listening connection is down.",
        "- The claim is served by a partial index on queued jobs, so finished rows never enter the scan:",
        f"  {claim}.",
        f"- Of each function's import ({imports[0]} to {imports[-1]} ms), importing functions-framework and Flask alone"
        f" took {results['framework_import_ms']} ms;",
        "  google-cloud-tasks and the Cloud SQL connector are imported only when configured.",
    ]


def _writer(results: dict) -> list[str]:
    """The newsletter's Gemini writer against the emulator (bench/writer.py), when it ran."""
    writer = results.get("writer")
    if not writer:
        return []
    preview_ok = writer["first_preview_max_ms"] <= TARGETS["writer_first_preview_ms"]
    cancel_ok = writer["cancel_max_ms"] <= TARGETS["writer_cancel_ms"]
    return [
        "",
        "## Newsletter writer (Gemini emulator)",
        "",
        f"{writer['samples']} generations each, through the functions; the emulator sends a chunk every"
        f" {writer['chunk_every_seconds']:g} s.",
        "",
        "| measure | figure | target |",
        "| --- | --- | --- |",
        f"| model's first chunk to its preview on a status stream, p50 / worst | {writer['first_preview_p50_ms']}"
        f" / {writer['first_preview_max_ms']} ms | ≤ 2 s: {verdict(preview_ok)} |",
        f"| cancel request to the writer's connection closed, chunk pending, p50 / worst | {writer['cancel_p50_ms']}"
        f" / {writer['cancel_max_ms']} ms | ≤ 1 s: {verdict(cancel_ok)} |",
    ]


def _tasks_path(results: dict) -> list[str]:
    """The Cloud Tasks path (bench/tasks_path.py) and the first enqueue with Tasks on."""
    if "tasks_path" not in results:
        return []
    path = results["tasks_path"]
    first = results.get("first_enqueue_with_tasks_ms")
    lines = [
        "",
        "## The Cloud Tasks path",
        "",
        f"Enqueue to handler start through the local Cloud Tasks emulator, one job at a time, medians of {path['samples']}."
        " The emulator's own share (from accepting the task to beginning its delivery) is reported apart: it is ours,",
        "and speeding it up would prove nothing about Cloud Tasks.",
        "",
        "| part | p50 |",
        "| --- | --- |",
        f"| enqueue to handler start | {path['total']} ms |",
        f"| of which the emulator's own | {path['emulator']} ms |",
        f"| enqueue to handler start, less the emulator's own | {path['total_less_emulator']} ms |",
        f"| push: the enqueue request, its commit and the push, to the emulator accepting the task | {path['push']} ms |",
        f"| process: the delivery, the process request, the named claim, to the handler's start | {path['process']} ms |",
    ]
    if "answer" in path:  # measured since 2026-12-05
        lines.append(f"| the enqueue's answer, as its caller waits for it (not on the path) | {path['answer']} ms |")
    if (peer := results.get("listen_peer")) is not None:
        ratio = path["total_less_emulator"] / peer["p50_ms"]
        lines += [
            f"| PgQueuer's LISTEN worker, enqueue to handler start, same server and run (p99 {peer['p99_ms']} ms)"
            f" | {peer['p50_ms']} ms |",
            f"| ours less the emulator's own / PgQueuer's LISTEN | {ratio:.2f} (≤ 1: {verdict(ratio <= 1)}) |",
        ]
    if first is not None:
        target = TARGETS["first_answer_ms"]
        lines.append(
            f"| first enqueue with Cloud Tasks on, from starting a fresh enqueue server to its answer | {first} ms"
            f" (≤ {target} ms: {verdict(first <= target)}) |"
        )
    return lines


def _first_enqueue_steps(results: dict) -> list[str]:
    """Where a fresh instance's first enqueue with Cloud Tasks on spends its time (bench/cold_start.py)."""
    if "first_enqueue_steps" not in results:
        return []
    lines = [
        "",
        "### The first enqueue with Cloud Tasks on, step by step",
        "",
        "A fresh interpreter takes each step of a fresh enqueue instance's first enqueue one after another (a server",
        "overlaps the Tasks client's import with the rest), timed in wall and in the process's CPU milliseconds (on a",
        "shared machine the wall time also measures the neighbours); medians. The last row is not on this path: it is",
        "what an instance deployed with the Cloud SQL connector adds on its first connection.",
        "",
        "| step | wall | CPU |",
        "| --- | --- | --- |",
    ]
    for row in results["first_enqueue_steps"]:
        cpu = "—" if row["cpu_ms"] is None else f"{row['cpu_ms']} ms"
        lines.append(f"| {row['step']} | {row['wall_ms']} ms | {cpu} |")
    return lines


def _pressure(results: dict) -> list[str]:
    """The claim while vacuum is held back (bench/pressure.py), when the run measured it."""
    if "pressure" not in results:
        return []
    pressure = results["pressure"]
    points = [str(checkpoint) for checkpoint in pressure["checkpoints"]]
    lines = [
        "",
        "## Pressure",
        "",
        "After the `idle_in_tx` and `active_readers` cells of hardbyte/postgresql-job-queue-benchmarking: jobs flow",
        "one at a time (enqueue, claim, one progress write, complete) while another connection holds vacuum back, with",
        "an idle transaction that took an XID, or an open REPEATABLE READ transaction. The claim is the runner's, from",
        "its remembered floor with the full claim every `CLAIM_RESCAN_SECONDS`. Its latency p50 / p99 in ms, and the",
        "pages one claim reads (EXPLAIN's shared buffers, which the machine's load cannot blur; in brackets, the full",
        "claim a rescan runs): clean, after each number of jobs with the hold on, and after the hold is released and",
        "the table vacuumed once. `N full`: how many of the sampled claims were full ones (a rescan's), which alone",
        "can make the p99 under a hold. `procrastinate_*`: Procrastinate's own fetch and finish functions, same probe,",
        "same database. [claim-design.md](claim-design.md) reads these figures.",
        "",
        "| cell | clean | " + " | ".join(f"after {int(point):,}" for point in points) + " | released | p99 ratio |",
        "| --- | --- | " + " | ".join("---" for _ in points) + " | --- | --- |",
    ]
    for name, cell in pressure["cells"].items():
        figures = [cell["clean"], *(cell.get(point) for point in points), cell["released"]]
        shown = [_pressure_figures(f) if f else "not run ¹" for f in figures]
        at = cell.get("p99_ratio_at", int(points[-1]))
        ratio = f"{cell['p99_ratio']:g}" + ("" if at == int(points[-1]) else f" at {at:,}")
        lines.append(f"| {name} | " + " | ".join(shown) + f" | {ratio} |")
    if any(point not in cell for cell in pressure["cells"].values() for point in points):
        lines += [
            "",
            "¹ The cell ran no further (`bench/pressure.py`'s CELLS says how far each runs: the two-tenant cell stopped at",
            "10,000 jobs until its hinted claim took the running counts from the floors, claim-design.md).",
        ]
    return lines


def _pressure_figures(figures: dict) -> str:
    full = f" ({figures['full_pages']})" if "full_pages" in figures else ""
    rescans = f", {figures['full_claims']} full" if "full_claims" in figures else ""  # measured since 2026-12-05
    return f"{figures['p50_ms']:g} / {figures['p99_ms']:g} ms, {figures['pages']}{full} pages{rescans}"


def markdown(results: dict) -> str:
    sections = (
        _header, _core, _http_and_scale, _writer, _tasks_path, _first_enqueue_steps, _pressure, _cold_start, _reading,
    )  # fmt: skip
    return "\n".join(line for section in sections for line in section(results)) + "\n"
