"""``shmastra-cloud keys issue EMAIL | rotate EMAIL | revoke EMAIL | list``.

Registered through the ``proxy_core.commands`` entry-point group. ``issue`` and ``rotate`` print the
new key: it is the only time it is shown.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from proxy_core import load_config, make_context

from .lifecycle import KeyExists, KeyService, UnknownUser
from .store import GatewayStore


def register(commands: Any, config_option: Callable[[argparse.ArgumentParser], None]) -> None:
    keys = commands.add_parser("keys", help="manage the gateway's virtual keys")
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    issue = actions.add_parser("issue", help="issue a key to EMAIL and print it (shown once)")
    issue.add_argument("email")
    issue.add_argument("--user-id", help="the owner's user id (default: derived from the email)")
    issue.add_argument("--expires-days", type=float, help="the key expires after this many days")
    rotate = actions.add_parser("rotate", help="issue a new key; the old one works for the grace period")
    rotate.add_argument("email")
    rotate.add_argument("--grace-hours", type=float, default=24.0, help="how long the old key still works")
    revoke = actions.add_parser("revoke", help="revoke every key of EMAIL at once")
    revoke.add_argument("email")
    actions.add_parser("list", help="list keys (prefixes only)")
    for parser in (issue, rotate, revoke, actions.choices["list"]):
        config_option(parser)
    keys.set_defaults(func=lambda args: asyncio.run(_run(args)))


async def _run(args: argparse.Namespace) -> int:
    context = make_context(load_config(args.config))
    store = GatewayStore.for_context(context)
    await store.db.open()
    try:
        return await _act(KeyService(store), args)
    finally:
        await store.db.close()


async def _act(service: KeyService, args: argparse.Namespace) -> int:
    try:
        if args.action == "issue":
            days = args.expires_days
            issued = await service.issue(
                args.email, args.user_id, None if days is None else timedelta(days=days)
            )
            print(issued.key)
        elif args.action == "rotate":
            print((await service.rotate(args.email, grace=timedelta(hours=args.grace_hours))).key)
        elif args.action == "revoke":
            print(f"revoked {await service.revoke(args.email)} key(s) of {args.email}")
        else:
            for item in await service.list():
                record = item.record
                expires = record.expires_at.isoformat(timespec="seconds") if record.expires_at else "-"
                print(f"{item.email}\t{record.prefix}\t{item.state}\t{expires}")
    except (KeyExists, UnknownUser, ValueError) as exc:
        print(f"error: {exc}")
        return 1
    return 0
