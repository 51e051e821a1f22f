"""The ``db upgrade`` and ``db status`` commands, and the helpers other plugins' commands use to
reach the database (``run`` and ``connected``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from ..config import ProxyConfig, load_config
from ..redact import redact
from .config import DatabaseConfig
from .database import Database
from .errors import StoreError

Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


def run(command: Command) -> Callable[[argparse.Namespace], int]:
    """Wrap an async command: a :class:`StoreError` becomes ``error: ...`` and exit status 1."""

    def main(args: argparse.Namespace) -> int:
        try:
            return asyncio.run(command(args))
        except StoreError as exc:
            print(f"error: {redact(exc.message)}", file=sys.stderr)
            return 1

    return main


def command_config(args: argparse.Namespace) -> ProxyConfig:
    """The ``--config`` file of a command, with the program's defaults (``proxy_core.cli.main``)."""
    return load_config(args.config, defaults=getattr(args, "config_defaults", None))


@asynccontextmanager
async def connected(args: argparse.Namespace, *, migrate: bool | None = None) -> AsyncIterator[Database]:
    """The database of ``--config``, connected once (no background retries: a command fails fast).

    Pending migrations are applied first when ``migrate`` (default: the config's
    ``migrate_on_start``), so commands work against a brand-new database the way the server would.
    """
    config = command_config(args).section("database", DatabaseConfig)
    db = Database(config)
    try:
        await db.connect()
        if config.migrate_on_start if migrate is None else migrate:
            await db.migrate()
        yield db
    finally:
        await db.close()


async def _upgrade(args: argparse.Namespace) -> int:
    async with connected(args, migrate=False) as db:
        applied = await db.migrate()
    for migration in applied:
        print(f"applied {migration}")
    print(f"{len(applied)} migration(s) applied" if applied else "up to date: nothing to apply")
    return 0


async def _status(args: argparse.Namespace) -> int:
    async with connected(args, migrate=False) as db:
        owners = await db.migration_status()
        print(f"{db.dialect} {db.where}")
    for owner in owners:
        line = f"{owner.owner}: version {owner.version:04d}"
        if owner.pending:
            line += ", pending: " + ", ".join(f"{m.version:04d}_{m.name}" for m in owner.pending)
        else:
            line += ", up to date"
        if owner.unknown:
            line += ", applied but unknown here: " + ", ".join(f"{v:04d}" for v in owner.unknown)
        print(line)
    return 0


def register(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    config_option: Callable[[argparse.ArgumentParser], None],
) -> None:
    db = commands.add_parser("db", help="database schema: apply migrations, show status")
    actions = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = actions.add_parser("upgrade", help="apply pending migrations and list them")
    config_option(upgrade)
    upgrade.set_defaults(func=run(_upgrade))
    status = actions.add_parser("status", help="per owner: applied version and pending migrations")
    config_option(status)
    status.set_defaults(func=run(_status))
