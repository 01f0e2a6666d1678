"""python -m client {enqueue,status,follow,cancel,rerun,list,stats} ...

URLs and the token come from flags or the environment (JOBQUEUE_ENQUEUE_URL,
JOBQUEUE_STATUS_URL, JOBQUEUE_CANCEL_URL, JOBQUEUE_PROCESS_URL, API_TOKEN); the defaults
are the ports that `make dev` uses.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from client.api import JobQueueClient, JobQueueHTTPError
from client.render import follow_in_terminal, render_stats


def build_client(args) -> JobQueueClient:
    return JobQueueClient(
        enqueue_url=args.enqueue_url,
        status_url=args.status_url,
        cancel_url=args.cancel_url,
        process_url=args.process_url,
        token=args.token,
    )


def parser() -> argparse.ArgumentParser:
    env = os.environ.get
    top = argparse.ArgumentParser(prog="python -m client", description=__doc__.split("\n\n")[0])
    top.add_argument("--enqueue-url", default=env("JOBQUEUE_ENQUEUE_URL", "http://127.0.0.1:8081/"))
    top.add_argument("--process-url", default=env("JOBQUEUE_PROCESS_URL", "http://127.0.0.1:8082/"))
    top.add_argument("--status-url", default=env("JOBQUEUE_STATUS_URL", "http://127.0.0.1:8083/"))
    top.add_argument("--cancel-url", default=env("JOBQUEUE_CANCEL_URL", "http://127.0.0.1:8084/"))
    top.add_argument("--token", default=env("API_TOKEN"))
    commands = top.add_subparsers(dest="command", required=True)
    enqueue = commands.add_parser("enqueue", help="queue a job; prints it as JSON")
    enqueue.add_argument("body", help='the JSON body, e.g. \'{"kind": "demo", "steps": 3}\'')
    enqueue.add_argument("--follow", action="store_true", help="then follow it live")
    for name, text in (
        ("status", "print the job as JSON"),
        ("follow", "follow the job live"),
        ("cancel", "cancel the job"),
        ("rerun", "queue a new job with a failed or cancelled job's payload"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("id")
    listing = commands.add_parser("list", help="the token's jobs, newest first, one page as JSON")
    listing.add_argument("--status", help="comma-separated, e.g. queued,running")
    listing.add_argument("--kind")
    listing.add_argument("--limit", type=int)
    listing.add_argument("--cursor", help="the previous page's nextCursor")
    stats = commands.add_parser("stats", help="the queue's figures (the status function's metrics view; needs --token)")
    stats.add_argument("--window", type=int, help="seconds of finished jobs to count (default 3600)")
    stats.add_argument("--json", action="store_true", help="print the figures as JSON")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    client = build_client(args)
    try:
        if args.command == "enqueue":
            job = client.enqueue(json.loads(args.body))
            print(json.dumps(job, indent=2))
            return follow_in_terminal(client, job["id"]) if args.follow else 0
        if args.command == "stats":
            figures = client.stats(args.window)
            print(json.dumps(figures, indent=2) if args.json else render_stats(figures))
        elif args.command == "status":
            print(json.dumps(client.status(args.id), indent=2))
        elif args.command == "cancel":
            print(json.dumps(client.cancel(args.id), indent=2))
        elif args.command == "rerun":
            print(json.dumps(client.rerun(args.id), indent=2))
        elif args.command == "list":
            page = client.list_jobs(status=args.status, kind=args.kind, limit=args.limit, cursor=args.cursor)
            print(json.dumps(page, indent=2))
        else:
            return follow_in_terminal(client, args.id)
    except JobQueueHTTPError as exc:
        print(exc, file=sys.stderr)
        return 1
    except json.JSONDecodeError as exc:
        print(f"The body is not JSON: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
