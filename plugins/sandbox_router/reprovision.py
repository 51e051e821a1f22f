"""Reprovision: replace a user's sandbox by a new one made from the current template, keeping the
user's files where the provider can (:attr:`SandboxProvider.keeps_files`).

What is kept: the old sandbox's home without what the template owns or rebuilds: the template's own
top-level entries (its scripts, healer, runtime), dependencies and build output (``node_modules``,
``.mastra``, ``.turbo``), update backups, pm2's state, caches and the sandbox's log. In the new
sandbox the project folder is the user's (its dependencies and build output the new template's), and
the user's other files are added where the template has nothing of the same name. Empty folders are
not carried. Changes the user makes between the packing and the removal are lost: an administrator's
action, meant for a sandbox that is not in use.

Order, so nothing is lost on a failure: the files are packed out of the old sandbox first (a failure
there changes nothing); only then is the old one removed and a new one made; the archive is put into
the new one and merged. If that last step fails, the archive stays in the new sandbox's home as
:data:`LEFT_ARCHIVE` and the error says so."""

from __future__ import annotations

import shlex
import uuid
from dataclasses import dataclass
from pathlib import Path

from .export import PROJECT
from .lifecycle import Lifecycle
from .providers.base import ProviderError

CARRY = ".reprovision"
"""Where the packed files are unpacked in the new sandbox before they are merged."""
REBUILT = ("node_modules", ".mastra", ".turbo")
"""Dependencies and build output: never carried (the new template's are used)."""
NOT_CARRIED = (
    *("./.rollback", "./.sandbox.log", "./.template-version", "./runtime", f"./{CARRY}"),
    *("./.pm2", "./.npm", "./.cache"),
)
"""Update backups, logs, process-manager state, caches and what the template writes: never carried."""
LEFT_ARCHIVE = ".reprovision-files.tar.gz"


@dataclass(frozen=True, slots=True)
class Reprovisioned:
    kept_files: bool
    """Whether the user's files were carried over (False: the provider starts fresh, or not asked)."""
    archive_bytes: int = 0

    @property
    def message(self) -> str:
        if self.kept_files:
            size = self.archive_bytes
            return f"A new sandbox from the current template, with the user's files ({size} bytes packed)."
        return "A new sandbox from the current template, fresh: the old files are gone."


class NoSandboxToReprovision(Exception):
    """The user has no sandbox yet."""


def template_owned(template_dir: Path) -> list[str]:
    """The template's own top-level entries (``./name``), which the new sandbox gets afresh; its
    ``app`` folder is the project's starting point, the user's to keep."""
    try:
        names = sorted(entry.name for entry in template_dir.iterdir() if entry.name not in ("app", PROJECT))
    except OSError:
        return []
    return [f"./{name}" for name in names]


async def reprovision_sandbox(
    lifecycle: Lifecycle, user_id: uuid.UUID, *, keep_files: bool, limit: float
) -> Reprovisioned:
    """Replace the user's sandbox (see the module's docstring); ``limit`` bounds each command."""
    row = await lifecycle.store.of_user(user_id)
    if row is None:
        raise NoSandboxToReprovision("This user has no sandbox yet.")
    provider = lifecycle.provider
    archive: bytes | None = None
    if keep_files and provider.keeps_files and row.handle is not None:
        skip = [*REBUILT, *NOT_CARRIED, *template_owned(lifecycle.config.template_dir)]
        try:  # where commands run in a stopped sandbox (local), it is not started for this
            archive = await provider.pack_files(row.handle, skip, limit=limit)
        except ProviderError:
            if row.state in ("running", "broken"):
                raise
            old = await lifecycle.ensure_running(user_id)
            assert old.handle is not None
            archive = await provider.pack_files(old.handle, skip, limit=limit)
    await lifecycle.kill(user_id)
    new = await lifecycle.ensure_running(user_id)
    if archive is None:
        return Reprovisioned(kept_files=False)
    assert new.handle is not None
    try:
        await provider.unpack_files(new.handle, archive, CARRY, limit=limit)
        done = await provider.run(new.handle, _MERGE, limit=limit)
        if done.exit_code != 0:
            raise ProviderError(f"merging them failed: {(done.stderr or done.stdout).strip()[-300:]}")
    except ProviderError as exc:
        try:
            await provider.write_file(new.handle, LEFT_ARCHIVE, archive)
        except ProviderError:
            raise ProviderError(f"The user's files could not be put into the new sandbox: {exc}") from exc
        raise ProviderError(
            f"The user's files could not be put into the new sandbox ({exc}); they are in its {LEFT_ARCHIVE}."
        ) from exc
    return Reprovisioned(kept_files=True, archive_bytes=len(archive))


_P = shlex.quote(PROJECT)
_C = shlex.quote(CARRY)
_MERGE = (
    'set -e; cd "${SANDBOX_HOME:-/home/user}"; '
    # the project: the user's files in place of the template's, keeping the new dependencies and build
    f"if [ -d {_C}/{_P} ]; then mkdir -p {_P}; "
    f"find {_P} -mindepth 1 -maxdepth 1 "
    + " ".join(f"! -name {name}" for name in REBUILT)
    + " -exec rm -rf {} +; "
    f"tar -C {_C} -cf - {_P} | tar -xf -; rm -rf {_C}/{_P}; fi; "
    # everything else of the user's, where the new template has nothing of that name
    f"tar -C {_C} -cf - . | tar -xf - --skip-old-files; rm -rf {_C}"
)
