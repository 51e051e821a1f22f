"""``shmastra-cloud keys issue EMAIL | rotate EMAIL | revoke EMAIL | list`` and
``shmastra-cloud usage [--user EMAIL] [--since DATE] [--by day|provider|model] [--json]``.

Registered through the ``proxy_core.commands`` entry-point group. ``issue`` and ``rotate`` print the
new key: it is the only time it is shown. Keys belong to existing users (``shmastra-cloud users add``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from plugins.auth import UserDirectory
from proxy_core.db.cli import connected, run

from .lifecycle import DEFAULT_GRACE, KeyExists, KeyService
from .reports import UsageReports, month_start


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
    listing = actions.add_parser(
        "list", help="list keys (prefixes only), last use, tokens and cost this month"
    )
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
        used = await UsageReports(db).per_key(month_start())
    if not listing:
        print("no keys yet")
        return 0
    rows = []
    for item in listing:
        record = item.record
        usage = used.get(record.id)
        rows.append(
            [
                item.email,
                record.prefix,
                item.state,
                _when(record.expires_at),
                _when(usage.last_used if usage else None),
                f"{usage.tokens if usage else 0:,}",
                f"{usage.cost_usd if usage else 0.0:.2f}",
            ]
        )
    headers = ["EMAIL", "KEY", "STATE", "EXPIRES", "LAST USED", "TOKENS (MONTH)", "COST USD (MONTH)"]
    print(table(headers, rows))
    return 0


def register_usage(commands: Any, config_option: Callable[[argparse.ArgumentParser], None]) -> None:
    usage = commands.add_parser("usage", help="who spent what through the gateway")
    usage.add_argument("--user", metavar="EMAIL", help="only this user")
    usage.add_argument(
        "--since",
        metavar="DATE",
        type=_date,
        help="from this day on, YYYY-MM-DD in UTC (default: the first of this month)",
    )
    usage.add_argument("--by", choices=("day", "provider", "model"), default="provider", help="group rows")
    usage.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    config_option(usage)
    usage.set_defaults(func=run(_usage))


async def _usage(args: argparse.Namespace) -> int:
    since = (
        datetime(args.since.year, args.since.month, args.since.day, tzinfo=UTC)
        if args.since
        else month_start()
    )
    async with connected(args) as db:
        users = UserDirectory(db)
        user_id = None
        if args.user:
            user = await users.find_by_email(args.user)
            if user is None:
                print(f"error: no user {args.user}", file=sys.stderr)
                return 1
            user_id = user.id
        emails = {user.id: user.email for user in await users.list()}
        lines = await UsageReports(db).summary(by=args.by, since=since, user_id=user_id)
    if args.json:
        for line in lines:
            entry = {
                "user": emails.get(line.user_id, str(line.user_id)),
                args.by: line.group,
                "requests": line.requests,
                "tokens_in": line.tokens_in,
                "tokens_out": line.tokens_out,
                "cost_usd": round(line.cost_usd, 6),
                "unpriced_requests": line.unpriced,
                "tool_executions": line.tool_executions,
                "estimated_requests": line.estimated,
            }
            print(orjson.dumps(entry).decode())
        return 0
    if not lines:
        print(f"no usage since {since.date().isoformat()}")
        return 0
    rows = [
        [
            line.group,
            emails.get(line.user_id, str(line.user_id)),
            f"{line.requests:,}",
            f"{line.tokens_in:,}",
            f"{line.tokens_out:,}",
            f"{line.tool_executions:,}",
            f"{line.cost_usd:.4f}" + ("*" if line.unpriced else ""),
        ]
        for line in lines
    ]
    headers = [args.by.upper(), "USER", "REQUESTS", "TOKENS IN", "TOKENS OUT", "TOOL CALLS", "COST USD"]
    print(table(headers, rows))
    total = sum(line.cost_usd for line in lines)
    print(f"\ntotal since {since.date().isoformat()}: {total:.4f} USD")
    if any(line.unpriced for line in lines):
        print("* some requests used a model without a price in [pipeline.prices]: not counted")
    return 0


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; numbers (cells starting with a digit) aligned right."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str], header: bool = False) -> str:
        padded = [
            cell.rjust(width) if not header and cell[:1].isdigit() else cell.ljust(width)
            for cell, width in zip(cells, widths, strict=True)
        ]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers, header=True), *(line(row) for row in rows)])


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment else "-"


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None
