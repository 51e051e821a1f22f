"""``shmastra-cloud sandboxes list | pause EMAIL | resume EMAIL | kill EMAIL | logs EMAIL | export EMAIL``.

Commands act through the same lifecycle as the server (the store's per-user lock included), with the
provider ``proxy.toml``'s ``sandbox_router`` table configures.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from plugins.auth import UserDirectory
from plugins.vkey import KeyService
from proxy_core import load_config
from proxy_core.db.cli import Command, connected, run

from .config import SandboxRouterConfig
from .export import export_project, find_user
from .lifecycle import CloudUrls, Lifecycle
from .providers import build_provider
from .providers.base import ProviderError

_LOGS = (
    'cd "${SANDBOX_HOME:-/home/user}"; ./pm2.sh logs --nostream --lines 200 2>/dev/null '
    "|| tail -n 200 .sandbox.log 2>/dev/null || true"
)


def register(commands: Any, config_option: Callable[[argparse.ArgumentParser], None]) -> None:
    sandboxes = commands.add_parser("sandboxes", help="list and manage users' sandboxes")
    actions = sandboxes.add_subparsers(dest="action", required=True, metavar="ACTION")
    parsers = [actions.add_parser("list", help="every sandbox with its owner, state and reason")]
    parsers[0].set_defaults(func=run(_readable(_list)))
    for name, help_text, command in (
        ("pause", "pause EMAIL's sandbox (files are kept)", _pause),
        ("resume", "start EMAIL's sandbox and wait until it is healthy", _resume),
        ("kill", "remove EMAIL's sandbox and its files (a new one is made on the next visit)", _kill),
        ("logs", "print the last lines of EMAIL's sandbox logs", _logs),
        ("export", "write EMAIL's project as a .tar.gz", _export),
    ):
        parser = actions.add_parser(name, help=help_text)
        parser.add_argument("email")
        if name == "export":
            parser.add_argument("-o", "--output", help="file to write (default: <email>.tar.gz)")
        parser.set_defaults(func=run(_readable(command)))
        parsers.append(parser)
    for parser in parsers:
        config_option(parser)


def _readable(command: Command) -> Command:
    """A provider failure (timeout, provider down, refused credentials) is one ``error: ...`` line and
    exit status 1, like every other command error, never a traceback."""

    async def guarded(args: argparse.Namespace) -> int:
        try:
            return await command(args)
        except ProviderError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 1

    return guarded


@asynccontextmanager
async def _lifecycle(args: argparse.Namespace) -> AsyncIterator[Lifecycle]:
    loaded = load_config(args.config)
    specs = [spec for spec in loaded.pipeline if spec.name == "sandbox_router"]
    config = loaded.stage_config(specs[0], SandboxRouterConfig) if specs else SandboxRouterConfig()
    server = loaded.server
    public = str(server.public_url).rstrip("/") if server.public_url else f"http://127.0.0.1:{server.port}"
    internal = str(config.cloud_url).rstrip("/") if config.cloud_url else public
    async with connected(args) as db:
        provider = build_provider(config)
        lifecycle = Lifecycle(db, provider, config, KeyService(db), CloudUrls(public, internal))
        try:
            yield lifecycle
        finally:
            await lifecycle.close()


async def _owner(lifecycle: Lifecycle, email: str) -> uuid.UUID | None:
    user_id = await find_user(UserDirectory(lifecycle.db), email)
    if user_id is None or await lifecycle.store.of_user(user_id) is None:
        print(f"error: {email} has no sandbox", file=sys.stderr)
        return None
    return user_id


async def _list(args: argparse.Namespace) -> int:
    async with _lifecycle(args) as lifecycle:
        emails = {u.id: u.email for u in await UserDirectory(lifecycle.db).list()}
        rows = await lifecycle.store.all()
    for row in rows:
        active = row.last_activity_at.isoformat(timespec="seconds") if row.last_activity_at else "-"
        reason = row.error_message or row.healer_message or ""
        owner = emails.get(row.user_id, str(row.user_id))
        print(f"{owner}\t{row.state}\t{row.sandbox_id or '-'}\t{active}\t{reason}")
    if not rows:
        print("no sandboxes")
    return 0


async def _pause(args: argparse.Namespace) -> int:
    async with _lifecycle(args) as lifecycle:
        if (user_id := await _owner(lifecycle, args.email)) is None:
            return 1
        paused = await lifecycle.pause(user_id, "paused by an administrator")
    print(f"paused the sandbox of {args.email}" if paused else f"the sandbox of {args.email} was not running")
    return 0


async def _resume(args: argparse.Namespace) -> int:
    async with _lifecycle(args) as lifecycle:
        if (user_id := await _owner(lifecycle, args.email)) is None:
            return 1
        try:
            await lifecycle.ensure_running(user_id)
        except ProviderError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 1
    print(f"the sandbox of {args.email} is healthy")
    return 0


async def _kill(args: argparse.Namespace) -> int:
    async with _lifecycle(args) as lifecycle:
        if (user_id := await _owner(lifecycle, args.email)) is None:
            return 1
        await lifecycle.kill(user_id)
    print(f"removed the sandbox of {args.email}")
    return 0


async def _logs(args: argparse.Namespace) -> int:
    async with _lifecycle(args) as lifecycle:
        if (user_id := await _owner(lifecycle, args.email)) is None:
            return 1
        row = await lifecycle.store.of_user(user_id)
        assert row is not None
        if row.handle is None:
            print(f"error: {args.email}'s sandbox has been removed", file=sys.stderr)
            return 1
        result = await lifecycle.provider.run(row.handle, _LOGS, limit=30)
    sys.stdout.write(result.stdout)
    return 0


async def _export(args: argparse.Namespace) -> int:
    output = Path(args.output or f"{args.email}.tar.gz")
    written = 0
    async with _lifecycle(args) as lifecycle:
        if (user_id := await _owner(lifecycle, args.email)) is None:
            return 1
        try:
            async with export_project(lifecycle, user_id, lifecycle.config.export_limit) as chunks:
                file = await asyncio.to_thread(output.open, "wb")
                try:
                    async for chunk in chunks:
                        written += await asyncio.to_thread(file.write, chunk)
                finally:
                    await asyncio.to_thread(file.close)
        except ProviderError as exc:
            await asyncio.to_thread(output.unlink, missing_ok=True)  # never half an archive behind
            print(f"error: {exc.message}", file=sys.stderr)
            return 1
    print(f"wrote {output} ({written} bytes)")
    return 0
