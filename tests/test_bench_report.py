"""The benchmarks page is written from the run: every figure in its tables and in its prose
comes from the results, none is frozen in the code."""

import copy

import pytest

from bench import report
from bench.run import ON_THE_STACK, WITHOUT_STACK, keeping_sections, merged, publishes, sizes

RESULTS = {
    "date": "2026-01-02T03:04:05+00:00",
    "machine": {"cores": 2, "python": "3.11.7", "platform": "Linux-test"},
    "postgres": {"fsync": "on", "synchronous_commit": "on"},
    "core_throughput": [
        {
            "workers": 1,
            "plain_jobs_per_s": 1000,
            "fair_jobs_per_s": 990,
            "core_jobs_per_s": 870,
            "ratio": 0.87,
            "fair_ratio": 0.88,
            "fair_price": 0.99,
        },
        {
            "workers": 2,
            "plain_jobs_per_s": 1400,
            "fair_jobs_per_s": 1350,
            "core_jobs_per_s": 1300,
            "ratio": 0.93,
            "fair_ratio": 0.96,
            "fair_price": 0.96,
        },
        {
            "workers": 4,
            "plain_jobs_per_s": 1500,
            "fair_jobs_per_s": 1450,
            "core_jobs_per_s": 1470,
            "ratio": 0.98,
            "fair_ratio": 1.01,
            "fair_price": 0.97,
        },
    ],
    "cold_start": [
        {"function": "enqueue", "import_ms": 181, "first_answer_ms": 321, "rss_mb": 76},
        {"function": "status", "import_ms": 197, "first_answer_ms": 611, "rss_mb": 77},
    ],
    "framework_import_ms": 123,
    "settings": {"cancel_check_seconds": 0.25, "stream_keepalive_seconds": 7.0},
    "http_process_per_s": 579,
    "enqueue": {"p50_ms": 1.61, "p99_ms": 2.07, "rate_8_clients_per_s": 583, "bulk_jobs_per_s": 12345},
    "propagation": {"samples": 300, "p50_ms": 2.1, "p99_ms": 7.9},
    "stream_queries_per_s": {"1_stream": 1.04, "100_streams": 0.057},
    "cancel": {"samples": 30, "p50_ms": 131, "p99_ms": 242},
    "scale": {
        "claim_ms_10k": 0.436,
        "claim_ms_1000k": 0.389,
        "ratio": 0.89,
        "sweep_ms_large": 0.9,
        "rows_large": 1_000_000,
    },
}


def reading(results: dict) -> str:
    page = report.markdown(results)
    return page[page.index("## Reading the figures") :]


def test_the_tables_hold_the_run_and_say_which_target_was_missed():
    page = report.markdown(RESULTS)
    assert "Measured 2026-01-02T03:04:05+00:00" in page and "on 2 cores" in page
    assert "| 1 | 1000 | 990 | 0.99 | 870 | 0.87 | 0.88 | MISSED |" in page  # 1 worker: 0.9 of the plain ideal
    assert "| 2 | 1400 | 1350 | 0.96 | 1300 | 0.93 | 0.96 | met |" in page
    assert "| status | 197 ms | 611 ms | 77 MB | MISSED |" in page
    assert "| 1.61 / 2.07 ms | p99 ≤ 10 ms: met |" in page
    assert "| 12,345 jobs/s | ≥ 10,000: met |" in page
    assert "0.436 / 0.389 ms" in page and "1,000,000 rows" in page


def test_the_prose_states_this_runs_figures():
    prose = reading(RESULTS)
    for figure in ("0.87", "0.93 to 0.98", "0.96 to 0.99", "1.04", "0.057", "7 s", "0.25 s", "p99 242 ms", "1,000,000", "0.389 ms",
                   "0.436 ms", "181 to 197 ms", "123 ms"):  # fmt: skip
        assert figure in prose, figure


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("settings", "cancel_check_seconds"), 0.75),
        (("settings", "stream_keepalive_seconds"), 30.0),
        (("stream_queries_per_s", "100_streams"), 0.031),
        (("framework_import_ms",), 99),
        (("scale", "ratio"), 1.23),
    ],
)
def test_another_run_gives_other_prose(path, value):
    other = copy.deepcopy(RESULTS)
    target = other
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert reading(other) != reading(RESULTS)
    assert f"{value:g}" in reading(other)


def test_the_pressure_section_holds_each_cell_and_checkpoint():
    cell = {"clean": {"p50_ms": 0.4, "p99_ms": 0.9, "pages": 30, "full_pages": 33},
            "2000": {"p50_ms": 0.8, "p99_ms": 1.7, "pages": 31, "full_pages": 120},
            "released": {"p50_ms": 0.5, "p99_ms": 1.0, "pages": 31, "full_pages": 30}, "p99_ratio": 1.89,
            "released_ratio": 1.11}  # fmt: skip
    theirs = {"clean": {"p50_ms": 0.5, "p99_ms": 1.0, "pages": 40}, "2000": {"p50_ms": 0.9, "p99_ms": 2.0, "pages": 90},
              "released": {"p50_ms": 0.5, "p99_ms": 1.0, "pages": 41}, "p99_ratio": 2.0, "released_ratio": 1.0}  # fmt: skip
    cells = {"idle_in_tx": cell, "procrastinate_idle_in_tx": theirs}
    page = report.markdown({**RESULTS, "pressure": {"checkpoints": [2000], "cells": cells}})
    assert "## Pressure" in page and "| cell | clean | after 2,000 | released | p99 ratio |" in page
    assert (
        "| idle_in_tx | 0.4 / 0.9 ms, 30 (33) pages | 0.8 / 1.7 ms, 31 (120) pages | 0.5 / 1 ms, 31 (30) pages | 1.89 |"
        in page
    )
    assert (
        "| procrastinate_idle_in_tx | 0.5 / 1 ms, 40 pages | 0.9 / 2 ms, 90 pages | 0.5 / 1 ms, 41 pages | 2 |" in page
    )
    assert "## Pressure" not in report.markdown(RESULTS)


def test_a_cell_that_stops_early_says_where_and_why():
    point = {"p50_ms": 1.0, "p99_ms": 2.0, "pages": 30}
    full = {"clean": point, "2000": point, "6000": point, "released": point, "p99_ratio": 1.0, "p99_ratio_at": 6000}
    early = {"clean": point, "2000": point, "released": point, "p99_ratio": 4.5, "p99_ratio_at": 2000}
    cells = {"idle_in_tx": full, "idle_in_tx_two_tenants": early}
    page = report.markdown({**RESULTS, "pressure": {"checkpoints": [2000, 6000], "cells": cells}})
    assert "| idle_in_tx_two_tenants | 1 / 2 ms, 30 pages | 1 / 2 ms, 30 pages | not run ¹ |" in page
    assert "| 1 / 2 ms, 30 pages | 1 |\n" in page and "| 4.5 at 2,000 |" in page  # at the last checkpoint: no "at"
    assert "¹ The cell ran no further" in page


def test_a_pressure_cell_says_how_many_sampled_claims_were_full_ones_when_counted():
    counted = {"p50_ms": 0.8, "p99_ms": 12.5, "pages": 36, "full_pages": 4739, "full_claims": 4}
    older = {"p50_ms": 1, "p99_ms": 2, "pages": 30}
    cell = {"clean": older, "2000": counted, "released": older, "p99_ratio": 6.25, "p99_ratio_at": 2000}
    page = report.markdown({**RESULTS, "pressure": {"checkpoints": [2000], "cells": {"active_reader": cell}}})
    assert "| 0.8 / 12.5 ms, 36 (4739) pages, 4 full |" in page
    assert "| 1 / 2 ms, 30 pages |" in page  # a run before the count says nothing of it


def test_the_tasks_path_section_reports_the_emulators_share_apart():
    path = {"total": 9.1, "push": 4.2, "emulator": 1.5, "process": 3.3, "total_less_emulator": 7.6, "samples": 30}
    page = report.markdown({**RESULTS, "tasks_path": path, "first_enqueue_with_tasks_ms": 612})
    assert "| of which the emulator's own | 1.5 ms |" in page and "less the emulator's own | 7.6 ms |" in page
    assert "| 612 ms (≤ 500 ms: MISSED) |" in page
    assert "PgQueuer" not in page  # a run without PgQueuer says nothing of it
    peer = {"p50_ms": 3.8, "p99_ms": 9.1, "samples": 30}
    page = report.markdown({**RESULTS, "tasks_path": path, "listen_peer": peer})
    assert "same server and run (p99 9.1 ms) | 3.8 ms |" in page and "| 2.00 (≤ 1: MISSED) |" in page
    assert "the enqueue's answer" not in page  # measured since 2026-12-05: older runs lack it
    page = report.markdown({**RESULTS, "tasks_path": {**path, "answer": 5.2}})
    assert "| the enqueue's answer, as its caller waits for it (not on the path) | 5.2 ms |" in page


def test_bulk_enqueue_is_reported_beside_pgbench_single_row_insert():
    enqueue = {**RESULTS["enqueue"], "bulk_clients": 2, "single_insert_per_s": 1500,
               "single_insert_runs_per_s": [1400, 1600], "bulk_over_single_insert": 8.23}  # fmt: skip
    page = report.markdown({**RESULTS, "enqueue": enqueue})
    assert "| pgbench single-row INSERT into the jobs table, 2 clients, same server, just before / after" in page
    assert "| 1,400 / 1,600 per s |" in page and "| 8.23× |" in page
    assert "pgbench" not in report.markdown(RESULTS)  # a run without pgbench says nothing of it


def test_the_first_enqueue_is_shown_step_by_step_when_the_run_measured_it():
    steps = [{"step": "the interpreter's start", "wall_ms": 31, "cpu_ms": None},
             {"step": "the Cloud Tasks client imported and built", "wall_ms": 377, "cpu_ms": 351}]  # fmt: skip
    page = report.markdown({**RESULTS, "first_enqueue_steps": steps})
    assert "| the interpreter's start | 31 ms | — |" in page
    assert "| the Cloud Tasks client imported and built | 377 ms | 351 ms |" in page
    assert "step by step" not in report.markdown(RESULTS)


def test_the_one_worker_ladder_shows_each_obligation_when_the_run_measured_it():
    steps = [
        {"step": "plain loop", "jobs_per_s": 1180, "of_plain": 1.0},
        {"step": "+ the two log lines", "jobs_per_s": 1114, "of_plain": 0.944},
        {"step": "the runner", "jobs_per_s": 1021, "of_plain": 0.865},
    ]
    page = report.markdown({**RESULTS, "core_ladder": steps})
    assert "| + the two log lines | 1114 | 0.94 |" in page and "| the runner | 1021 | 0.86 |" in page
    assert "| plain loop |" not in report.markdown(RESULTS)  # an older run's page says nothing


def test_every_scenario_has_its_module_and_the_smoke_run_is_smaller():
    import importlib  # noqa: PLC0415

    for name in WITHOUT_STACK + ON_THE_STACK:
        assert callable(importlib.import_module(f"bench.{name}").measure), name
    quick, full = sizes(quick=True), sizes(quick=False)
    assert all(quick[key] <= full[key] for key in full)


def test_make_bench_keeps_the_scale_section_that_make_scale_wrote():
    page = report.markdown(RESULTS)
    published = "# Benchmarks\n\n## Core throughput\nstale figure 9999\n\n## Scale\n\n1,000 jobs at once\n"
    kept = keeping_sections(page, published, ["## Scale"])
    assert kept.startswith(page.rstrip("\n")) and kept.endswith("## Scale\n\n1,000 jobs at once\n")
    assert "stale figure 9999" not in kept
    assert keeping_sections(page, "# Benchmarks\n", ["## Scale"]) == page


def test_a_merge_that_did_not_measure_pressure_keeps_its_section_and_its_note():
    pressure = {"checkpoints": [2000], "cells": {}}
    page = report.markdown({**RESULTS, "pressure": pressure})
    published = "# Benchmarks\n\n## Pressure\n\n| old table |\n\nHow this section was run: by hand.\n\n## Cold start\n"
    kept = keeping_sections(page, published, ["## Scale", "## Pressure"])
    assert "| old table |\n\nHow this section was run: by hand.\n\n## " in kept
    assert kept.count("## Pressure") == 1 and "### Pressure" not in kept


def test_scenarios_measured_again_replace_theirs_and_the_header_says_so():
    again = {
        "date": "2026-02-03T00:00:00+00:00",
        "machine": {"cores": 8},
        "cancel": {"samples": 30, "p50_ms": 7, "p99_ms": 9},
    }
    results = merged(RESULTS, again, ["cancel"])
    assert results["cancel"]["p99_ms"] == 9 and results["date"] == RESULTS["date"]
    assert results["machine"] == RESULTS["machine"] and results["scale"] == RESULTS["scale"]
    page = report.markdown(results)
    assert "Measured again 2026-02-03T00:00:00+00:00 (`python -m bench.run --only cancel --merge`): cancel." in page
    assert "p99 9 ms" in page and "p99 242 ms" not in page
    # Measured again once more, the older entry for the same scenarios goes.
    twice = merged(results, {**again, "date": "2026-03-04T00:00:00+00:00"}, ["cancel"])
    assert [entry["date"] for entry in twice["remeasured"]] == ["2026-03-04T00:00:00+00:00"]
    # Measured by a scenario's own module: the header names that command.
    alone = merged(results, {**again, "date": "2026-03-05T00:00:00+00:00"}, ["cancel"], "python -m bench.cancel")
    assert "Measured again 2026-03-05T00:00:00+00:00 (`python -m bench.cancel`): cancel." in report.markdown(alone)


def test_only_a_full_run_or_a_merge_writes_the_results_that_a_merge_builds_on():
    assert publishes(quick=False, only=None, merge=False)
    assert publishes(quick=False, only="throughput", merge=True)
    assert not publishes(quick=False, only="throughput", merge=False)  # printed: the full run's stay
    assert not publishes(quick=True, only=None, merge=False)
    assert not publishes(quick=True, only="writer", merge=False)
