""" "Download my project": a ``.tar.gz`` of the user's project as a standalone Mastra app, made inside
the sandbox (so it works on every provider) without ``node_modules``, build output, git history or
any ``.env`` file but ``.env.example`` (the virtual key lives only in the environment and in ``.env``
files, so it never leaves).

The archive is streamed out of the sandbox piece by piece (:meth:`SandboxProvider.read_chunks`), so a
big project costs the proxy one chunk of memory per download, not the archive's size."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

from plugins.auth import UserDirectory
from proxy_core.db import NotFound

from .lifecycle import Lifecycle
from .providers.base import ProviderError

ARCHIVE = ".shmastra-export.tar.gz"
PROJECT = "shmastra"
_COMMAND = (
    'set -e; cd "${{SANDBOX_HOME:-/home/user}}"; rm -f {archive}; cd {project}; '
    "find . \\( -name node_modules -o -name .mastra -o -name .git -o -name .turbo \\) -prune -o "
    "-type f ! -name '.env' ! \\( -name '.env.*' ! -name '.env.example' \\) -print0 "
    "| tar --null -czf ../{archive} --transform 's,^\\./,{project}/,' -T -"
)


class ExportRefused(Exception):
    """There is nothing to export (no sandbox, or no project in it)."""


@contextlib.asynccontextmanager
async def export_project(
    lifecycle: Lifecycle, user_id: uuid.UUID, limit: float
) -> AsyncIterator[AsyncIterator[bytes]]:
    """The archive's bytes as they stream out of the sandbox (started first when paused).

    Entering raises :class:`ExportRefused` or :class:`ProviderError` before any byte is read, so a
    caller can still answer with an error; leaving removes the archive from the sandbox."""
    row = await lifecycle.store.of_user(user_id)
    if row is None:
        raise ExportRefused("This user has no sandbox yet.")
    row = await lifecycle.ensure_running(user_id)
    assert row.handle is not None
    provider = lifecycle.provider
    result = await provider.run(row.handle, _COMMAND.format(archive=ARCHIVE, project=PROJECT), limit=limit)
    if result.exit_code != 0:
        if "No such file" in result.stderr or "can't cd" in result.stderr:
            raise ExportRefused("The sandbox has no project folder to export.")
        raise ProviderError(f"The export failed in the sandbox: {result.stderr.strip()[:300]}")
    try:
        yield _read(provider.read_chunks(row.handle, ARCHIVE))
    finally:
        await provider.run(row.handle, f'rm -f "${{SANDBOX_HOME:-/home/user}}/{ARCHIVE}"', limit=limit)


async def _read(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``chunks`` with a read failure reported as the provider's."""
    try:
        async for chunk in chunks:
            yield chunk
    except OSError as exc:
        raise ProviderError(f"The export's archive could not be read: {exc}") from exc


async def find_user(users: UserDirectory, email_or_id: str) -> uuid.UUID | None:
    """A user named by email or id, through auth's user directory."""
    try:
        return (await users.get(uuid.UUID(email_or_id))).id
    except ValueError:
        found = await users.find_by_email(email_or_id.strip())
        return None if found is None else found.id
    except NotFound:
        return None
