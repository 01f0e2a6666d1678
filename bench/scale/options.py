"""What a make scale run is asked for: its arguments, and the rate limits they need."""

from __future__ import annotations

import argparse

from bench import scale


def requests_sent(args: argparse.Namespace) -> dict[str, int]:
    """The most requests of each rate-limited action a run sends: every job is one enqueue
    (the wait phase's and the scale phase's), every wait job and chosen job one cancel."""
    return {
        "enqueue": args.wait_jobs + args.jobs,
        "jobs": args.wait_jobs + args.jobs,
        "cancel": args.wait_jobs + args.cancel,
    }


def rate_limits(args: argparse.Namespace) -> dict[str, str]:
    """The limits this run needs, set explicitly (the defaults are a tenant's, not a load
    test's): twice what it sends, so that no request of it meets a 429 however the windows
    fall (tests/test_scale_limits.py checks it with the real limiter)."""
    sent = requests_sent(args)
    return {
        "RATE_LIMIT_ENQUEUE": str(2 * sent["enqueue"]),
        "RATE_LIMIT_JOBS": str(2 * sent["jobs"]),
        "RATE_LIMIT_CANCEL": str(2 * sent["cancel"]),
    }


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=scale.__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--job-seconds", type=float, default=60.0)
    parser.add_argument("--cancel", type=int, default=100)
    parser.add_argument("--wait-jobs", type=int, default=100)
    parser.add_argument("--wait-window", type=float, default=45.0)  # longer than one heartbeat interval
    parser.add_argument("--no-doc", action="store_true", help="write build/scale.json only")
    parser.add_argument(
        "--pgbouncer",
        action="store_true",
        help="the functions reach PostgreSQL through PgBouncer in transaction mode (build/scale-pgbouncer.json only)",
    )
    return parser.parse_args(argv)
