"""``shmastra-cloud keys issue EMAIL | rotate EMAIL | revoke EMAIL | list``.

Registered through the ``proxy_core.commands`` entry-point group. ``issue`` and ``rotate`` print the
new key: it is the only time it is shown. Keys belong to existing users (``shmastra-cloud users add``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from proxy_core.db.cli import connected, run

from .lifecycle import DEFAULT_GRACE, KeyExists, KeyService


def register(commands: Any, config_option: Callable[[argparse.ArgumentParser], None]) -> None:
    keys = commands.add_parser("keys", help="manage the gateway's virtual keys")
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    issue = actions.add_parser("issue", help="issue a key to the user EMAIL and print it (shown once)")
    issue.add_argument("email")
    issue.add_argument("--expires-days", type=float, help="the key expires after this many days")
    issue.set_defaults(func=run(_issue))
    rotate = actions.add_parser("rotate", help="issue a new key; the old one works for the grace period")
    rotate.add_argument("email")
    rotate.add_argument(
        "--grace-hours",
        type=float,
        default=DEFAULT_GRACE.total_seconds() / 3600,
        help="how long the old key still works (default: %(default)s)",
    )
    rotate.set_defaults(func=run(_rotate))
    revoke = actions.add_parser("revoke", help="revoke every key of EMAIL at once")
    revoke.add_argument("email")
    revoke.set_defaults(func=run(_revoke))
    listing = actions.add_parser("list", help="list keys (prefixes only)")
    listing.set_defaults(func=run(_list))
    for parser in (issue, rotate, revoke, listing):
        config_option(parser)


async def _issue(args: argparse.Namespace) -> int:
    days = args.expires_days
    async with connected(args) as db:
        try:
            issued = await KeyService(db).issue(
                args.email, expires_in=None if days is None else timedelta(days=days)
            )
        except KeyExists as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(issued.key)
    return 0


async def _rotate(args: argparse.Namespace) -> int:
    async with connected(args) as db:
        issued = await KeyService(db).rotate(args.email, grace=timedelta(hours=args.grace_hours))
    print(issued.key)
    return 0


async def _revoke(args: argparse.Namespace) -> int:
    async with connected(args) as db:
        count = await KeyService(db).revoke(args.email)
    print(f"revoked {count} key(s) of {args.email}")
    return 0


async def _list(args: argparse.Namespace) -> int:
    async with connected(args) as db:
        listing = await KeyService(db).list()
    for item in listing:
        record = item.record
        expires = record.expires_at.isoformat(timespec="seconds") if record.expires_at else "-"
        print(f"{item.email}\t{record.prefix}\t{item.state}\t{expires}")
    if not listing:
        print("no keys yet")
    return 0
