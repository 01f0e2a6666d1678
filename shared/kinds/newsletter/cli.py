"""Manage newsletter sources in DATABASE_URL (or the Cloud SQL settings):

python -m shared.kinds.newsletter.cli list
python -m shared.kinds.newsletter.cli add "Name" https://example.com/feed.xml
python -m shared.kinds.newsletter.cli disable ID
python -m shared.kinds.newsletter.cli remove ID
"""

from __future__ import annotations

import argparse
import sys

from shared.core.db import Session, connect
from shared.core.errors import JobQueueError
from shared.core.settings import Settings
from shared.kinds.newsletter import sources


def main(argv: list[str] | None = None) -> int:
    top = argparse.ArgumentParser(prog="python -m shared.kinds.newsletter.cli", description="Manage newsletter sources")
    commands = top.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list every source")
    add = commands.add_parser("add", help="add a source (or update the feed of one with that name)")
    add.add_argument("name")
    add.add_argument("feed_url")
    for name in ("disable", "remove"):
        commands.add_parser(name, help=f"{name} a source").add_argument("id", type=int)
    args = top.parse_args(argv)
    session = Session(connect(Settings.from_env().database))
    try:
        if args.command == "list":
            rows = sources.list_sources(session)
            for source in rows:
                print(
                    f"{source.id:4d}  {'active  ' if source.active else 'disabled'}  {source.name}  {source.feed_url}"
                )
            if not rows:
                print("no sources yet: add one with `add NAME URL`")
            return 0
        if args.command == "add":
            source = sources.add_source(session, args.name, args.feed_url)
        elif args.command == "disable":
            source = sources.disable_source(session, args.id)
        else:
            source = sources.remove_source(session, args.id)
        print(f"{args.command}: {source.id} {source.name} {source.feed_url}")
        return 0
    except JobQueueError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    finally:
        session.close()


if __name__ == "__main__":
    sys.exit(main())
