"""Migrations: from empty, re-run, status, owner order, and two processes upgrading at once."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from proxy_core.db import MigrationError, Source
from proxy_core.db.migrations import discover, ordered
from tests.db.backends import MakeDatabase, write_config

ALL = [
    ("auth", 1, "users"),
    ("auth", 2, "sessions"),
    ("auth", 3, "login_codes"),
    ("auth", 4, "sso"),
    ("auth", 5, "login_codes_per_flow"),
    ("auth", 6, "last_sign_in"),
    ("manage", 1, "audit_log"),
    ("manage", 2, "admin_tokens"),
    ("manage", 3, "rollouts"),
    ("manage", 4, "rollout_woken"),
    ("proxy_core", 1, "rate_limits"),
    ("sandbox_router", 1, "sandboxes"),
    ("sandbox_router", 2, "sandbox_runtime"),
    ("vkey", 1, "virtual_keys"),
    ("vkey", 2, "usage"),
    ("vkey", 3, "usage_details"),
]


async def test_upgrade_from_empty_then_no_op(make_db: MakeDatabase) -> None:
    db = make_db(migrate_on_start=False)
    await db.open()
    before = await db.migration_status()
    assert all(owner.version == 0 and owner.pending for owner in before)

    applied = await db.migrate()
    assert [(m.owner, m.version, m.name) for m in applied] == ALL
    assert await db.migrate() == []

    rows = await db.fetch(
        "SELECT owner, version, name, applied_at FROM schema_migrations ORDER BY owner, version"
    )
    assert [(r["owner"], r["version"], r["name"]) for r in rows] == ALL
    status = {owner.owner: owner for owner in await db.migration_status()}
    assert {name: s.version for name, s in status.items()} == {
        "auth": 6,
        "manage": 4,
        "proxy_core": 1,
        "sandbox_router": 2,
        "vkey": 3,
    }
    assert not any(s.pending or s.unknown for s in status.values())


async def test_open_migrates_when_configured(make_db: MakeDatabase) -> None:
    db = make_db()
    await db.open()
    assert await db.fetchval("SELECT count(*) FROM schema_migrations") == len(ALL)


async def test_a_failing_migration_applies_nothing(
    make_db: MakeDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "broken_owner"
    for dialect in ("postgres", "sqlite"):
        (package / dialect).mkdir(parents=True)
        (package / dialect / "0001_good.sql").write_text("CREATE TABLE good (id integer);\n")
        (package / dialect / "0002_bad.sql").write_text(
            "CREATE TABLE bad (id integer);\nSELECT * FROM missing;\n"
        )
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    db = make_db(migrate_on_start=False)
    db.sources = [Source("broken", "broken_owner")]
    await db.open()
    with pytest.raises(MigrationError, match="migration broken 0002_bad failed"):
        await db.migrate()
    status = await db.migration_status()
    assert [m.name for m in status[0].pending] == ["good", "bad"]


def test_owners_follow_their_dependencies() -> None:
    sources = [Source("vkey", "p", ("auth",)), Source("auth", "p"), Source("router", "p", ("vkey", "auth"))]
    assert [s.owner for s in ordered(sources)] == ["auth", "vkey", "router"]
    with pytest.raises(MigrationError, match="cycle"):
        ordered([Source("a", "p", ("b",)), Source("b", "p", ("a",))])
    with pytest.raises(MigrationError, match="auth, whose migrations are not installed"):
        ordered([Source("vkey", "p", ("auth",))])


def test_installed_owners_are_discovered() -> None:
    found = {source.owner: source.depends_on for source in discover()}
    assert found == {
        "auth": (),
        "manage": (),
        "proxy_core": (),
        "sandbox_router": ("auth",),
        "vkey": ("auth",),
    }


async def test_two_processes_upgrading_at_once(make_db: MakeDatabase, db_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "proxy.toml", db_url)
    command = [sys.executable, "-m", "proxy_core.cli", "db", "upgrade", "--config", str(config)]
    processes = [
        await asyncio.create_subprocess_exec(
            *command,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=Path(__file__).parents[2],
        )
        for _ in range(2)
    ]
    outputs = [await process.communicate() for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    applied, idle = sorted(out.decode() for out, _ in outputs)  # "applied ..." sorts first
    assert applied.endswith(f"{len(ALL)} migration(s) applied\n")
    assert idle == "up to date: nothing to apply\n"

    db = make_db(migrate_on_start=False)
    await db.open()
    rows = await db.fetch("SELECT owner, version FROM schema_migrations")
    assert sorted((r["owner"], r["version"]) for r in rows) == [(o, v) for o, v, _ in ALL]
