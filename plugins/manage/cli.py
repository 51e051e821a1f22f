"""``shmastra-cloud admin-token create EMAIL [--name NAME] | list | revoke ID``.

Registered through the ``proxy_core.commands`` entry-point group. ``create`` prints the token: it is
the only time it is shown. The token acts as EMAIL, who must be an admin (and stay one).
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Callable
from typing import Any

from plugins.auth import UserDirectory
from proxy_core.db import NotFound
from proxy_core.db.cli import connected, run

from .audit import AuditLog
from .tokens import AdminTokens


def register(commands: Any, config_option: Callable[[argparse.ArgumentParser], None]) -> None:
    tokens = commands.add_parser("admin-token", help="admin API tokens for /manage/api")
    actions = tokens.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a token acting as the admin EMAIL and print it (once)")
    create.add_argument("email")
    create.add_argument("--name", default="cli", help="what the token is for (default: %(default)s)")
    create.set_defaults(func=run(_create))
    listing = actions.add_parser("list", help="list tokens (prefixes only)")
    listing.set_defaults(func=run(_list))
    revoke = actions.add_parser("revoke", help="revoke the token with this id")
    revoke.add_argument("id")
    revoke.set_defaults(func=run(_revoke))
    for parser in (create, listing, revoke):
        config_option(parser)


async def _create(args: argparse.Namespace) -> int:
    async with connected(args) as db:
        user = await UserDirectory(db).get(args.email)
        if not user.is_admin or user.disabled:
            print(f"error: {user.email} is not an active admin", file=sys.stderr)
            return 1
        created = await AdminTokens(db).create(user.id, args.name)
        await AuditLog(db).record(user.id, "token.create", name=args.name, via="cli")
    print(created.token)
    return 0


async def _list(args: argparse.Namespace) -> int:
    async with connected(args) as db:
        emails = {u.id: u.email for u in await UserDirectory(db).list()}
        tokens = await AdminTokens(db).list()
    for token in tokens:
        state = "active" if token.active else "revoked"
        print(
            f"{token.id}\t{token.prefix}\t{token.name}\t{emails.get(token.user_id, token.user_id)}\t{state}"
        )
    if not tokens:
        print("no admin tokens")
    return 0


async def _revoke(args: argparse.Namespace) -> int:
    try:
        token_id = uuid.UUID(args.id)
    except ValueError:
        print(f"error: not a token id: {args.id}", file=sys.stderr)
        return 1
    async with connected(args) as db:
        if not await AdminTokens(db).revoke(token_id):
            raise NotFound(f"no live admin token with id {token_id}")
        await AuditLog(db).record(None, "token.revoke", token_id=str(token_id), via="cli")
    print(f"revoked {token_id}")
    return 0
