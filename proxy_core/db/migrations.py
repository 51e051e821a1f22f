"""Versioned SQL files per owner (a plugin), applied in order and recorded in ``schema_migrations``.

An owner registers a package under the entry-point group ``proxy_core.migrations`` (the entry
point's name is the owner). The package holds ``postgres/NNNN_name.sql`` and ``sqlite/NNNN_name.sql``
and may set ``DEPENDS_ON = ("other_owner", ...)`` when its tables reference another owner's.

One run is one transaction under an exclusive lock (``pg_advisory_xact_lock``, or SQLite's
``BEGIN IMMEDIATE``): replicas starting together queue up, the first applies everything, the others
find nothing left to do. DDL is transactional on both backends, so a failing file leaves the schema
as it was.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from importlib.metadata import entry_points
from importlib.resources import files

from .base import Connection, Store
from .config import Dialect
from .errors import MigrationError, StoreError

GROUP = "proxy_core.migrations"
_LOCK_KEY = "proxy_core.db.migrations"
_FILE = re.compile(r"(\d{4})_([A-Za-z0-9_]+)\.sql")

_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    owner text NOT NULL,
    version integer NOT NULL,
    name text NOT NULL,
    applied_at {timestamp} NOT NULL,
    PRIMARY KEY (owner, version)
)
"""
_TIMESTAMP_TYPE: dict[Dialect, str] = {"postgres": "timestamptz", "sqlite": "TIMESTAMPTZ"}
_TABLE_EXISTS: dict[Dialect, str] = {
    "postgres": "SELECT to_regclass('schema_migrations') IS NOT NULL",
    "sqlite": "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
}


@dataclass(frozen=True, slots=True)
class Migration:
    owner: str
    version: int
    name: str
    sql: str

    def __str__(self) -> str:
        return f"{self.owner} {self.version:04d}_{self.name}"


@dataclass(frozen=True, slots=True)
class Source:
    """One owner's migrations: ``package`` is importable and holds one folder per dialect."""

    owner: str
    package: str
    depends_on: tuple[str, ...] = ()

    def migrations(self, dialect: Dialect) -> list[Migration]:
        folder = files(self.package) / dialect
        if not folder.is_dir():
            raise MigrationError(f"{self.owner}: {self.package} has no {dialect}/ folder of migrations")
        found: dict[int, Migration] = {}
        for entry in folder.iterdir():
            match = _FILE.fullmatch(entry.name)
            if match is None:
                continue
            version = int(match.group(1))
            if version in found:
                raise MigrationError(f"{self.owner}: two {dialect} migrations numbered {version:04d}")
            found[version] = Migration(self.owner, version, match.group(2), entry.read_text("utf-8"))
        return [found[version] for version in sorted(found)]


@dataclass(frozen=True, slots=True)
class OwnerStatus:
    owner: str
    version: int
    """The highest applied version, 0 when none is."""
    pending: tuple[Migration, ...]
    unknown: tuple[int, ...]
    """Versions recorded in the database that no file matches (applied by newer code)."""


def discover() -> list[Source]:
    """The installed owners, from the ``proxy_core.migrations`` entry points."""
    sources = []
    for ep in entry_points(group=GROUP):
        module = importlib.import_module(ep.value)
        depends_on = tuple(getattr(module, "DEPENDS_ON", ()))
        sources.append(Source(ep.name, ep.value, depends_on))
    return sources


def ordered(sources: list[Source]) -> list[Source]:
    """Owners after those they depend on (alphabetical where free to choose)."""
    by_owner = {source.owner: source for source in sources}
    result: list[Source] = []
    placing: set[str] = set()

    def place(source: Source) -> None:
        if source in result:
            return
        if source.owner in placing:
            raise MigrationError(f"migration owners depend on each other in a cycle through {source.owner}")
        placing.add(source.owner)
        for dependency in sorted(source.depends_on):
            if dependency not in by_owner:
                raise MigrationError(
                    f"{source.owner} depends on {dependency}, whose migrations are not installed"
                )
            place(by_owner[dependency])
        placing.discard(source.owner)
        result.append(source)

    for owner in sorted(by_owner):
        place(by_owner[owner])
    return result


async def upgrade(db: Store, sources: list[Source] | None = None) -> list[Migration]:
    """Apply every pending migration; returns what was applied (empty: already up to date)."""
    plan = _plan(db.dialect, sources)
    async with db.transaction() as tx:
        await tx.xact_lock(_LOCK_KEY)
        await tx.execute(_TABLE.format(timestamp=_TIMESTAMP_TYPE[db.dialect]))
        done = await _applied(tx)
        applied = []
        for migration in plan:
            if migration.version in done.get(migration.owner, ()):
                continue
            try:
                await tx.execute_script(migration.sql)
            except StoreError as exc:
                raise MigrationError(f"migration {migration} failed: {exc.message}") from exc
            await tx.execute(
                "INSERT INTO schema_migrations (owner, version, name, applied_at) VALUES ($1, $2, $3, now())",
                migration.owner,
                migration.version,
                migration.name,
            )
            applied.append(migration)
    return applied


async def status(db: Connection, sources: list[Source] | None = None) -> list[OwnerStatus]:
    """Where each owner stands; reads only (the record table may not exist yet)."""
    sources = ordered(discover() if sources is None else sources)
    done = await _applied(db) if await db.fetchval(_TABLE_EXISTS[db.dialect]) else {}
    result = []
    for source in sources:
        migrations = source.migrations(db.dialect)
        applied = done.get(source.owner, set())
        known = {migration.version for migration in migrations}
        result.append(
            OwnerStatus(
                source.owner,
                max(applied, default=0),
                tuple(m for m in migrations if m.version not in applied),
                tuple(sorted(applied - known)),
            )
        )
    return result


def _plan(dialect: Dialect, sources: list[Source] | None) -> list[Migration]:
    return [
        m
        for source in ordered(discover() if sources is None else sources)
        for m in source.migrations(dialect)
    ]


async def _applied(db: Connection) -> dict[str, set[int]]:
    done: dict[str, set[int]] = {}
    for row in await db.fetch("SELECT owner, version FROM schema_migrations"):
        done.setdefault(row["owner"], set()).add(row["version"])
    return done
