"""make chaos: the fault campaign. Seeded and bounded; prints its seed and its verdict, writes
build/chaos.json, and exits 3 when any check fails (1 is a crash).

    python -m bench.campaign                     # a random seed, printed
    SEED=1234 python -m bench.campaign           # that run again
    python -m bench.campaign --plant claim-ignores-status   # with a bug planted: exits 0 only if caught

The campaign plays Cloud Tasks (one delivery per job at its run-at, some twice at once and
some again long after) and Cloud Scheduler (process and sweep ticks) against the local
stack, while it injects faults; then it stops the faults, waits for the queue to drain, and
judges what happened from the job rows, the ledger and what it saw over HTTP.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
from pathlib import Path

from bench.campaign.planted import CHECKS_FAILED, PLANTS, REPORT, planted_run
from bench.campaign.run import Campaign
from bench.campaign.verdict import judge


def run_campaign(seed: int, count: int, fault_seconds: float, only: tuple[str, ...] = (), pooler: bool = True) -> dict:
    campaign = Campaign(seed, count, fault_seconds, only, pooler)
    try:
        campaign.start()
        campaign.drive()
        drained_after, bound = campaign.drain()
        report = judge(campaign, drained_after, bound)
    finally:
        campaign.stop()
    left_behind = campaign.left_behind()
    report["checks"][left_behind.name] = left_behind.to_json()
    report["passed"] = report["passed"] and left_behind.ok
    return report


def stop_on_sigterm() -> None:
    """SIGTERM ends the campaign through its cleanup (Python's default would skip it)."""

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def main(argv: list[str]) -> int:
    stop_on_sigterm()
    parser = argparse.ArgumentParser(prog="python -m bench.campaign", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SEED") or random.randrange(1, 10**6)))
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("JOBS", "2000")))
    parser.add_argument("--fault-seconds", type=float, default=float(os.environ.get("FAULT_SECONDS", "180")))
    parser.add_argument("--plant", choices=sorted(PLANTS))
    parser.add_argument("--report", type=Path, default=REPORT)
    parser.add_argument("--faults", default=os.environ.get("FAULTS", ""), help="only these faults, comma-separated")
    parser.add_argument("--direct", action="store_true", help="no PgBouncer between the functions and PostgreSQL")
    args = parser.parse_args(argv)
    if args.plant:
        rest = ["--seed", str(args.seed), "--jobs", str(args.jobs), "--fault-seconds", str(args.fault_seconds)]
        rest += ["--faults", args.faults, *(["--direct"] if args.direct else [])]
        return planted_run(args.plant, rest)
    print(f"fault campaign: seed {args.seed} (rerun with SEED={args.seed}), {args.jobs} jobs", flush=True)
    only = tuple(filter(None, args.faults.split(",")))
    report = run_campaign(args.seed, args.jobs, args.fault_seconds, only, pooler=not args.direct)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2, default=str))
    for name, check in report["checks"].items():
        mark = "ok  " if check["ok"] else "FAIL"
        print(f"  {mark} {name} ({check['lookedAt']} looked at)")
        for problem in check["problems"][:5]:
            print(f"         {problem}")
    print(f"{'PASSED' if report['passed'] else 'FAILED'}: seed {args.seed}; figures in {args.report}")
    return 0 if report["passed"] else CHECKS_FAILED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
