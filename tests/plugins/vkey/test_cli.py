"""``shmastra-cloud keys issue|rotate|revoke|list`` through the real entry point, on a SQLite proxy.toml."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from plugins.vkey.keys import display_prefix, hash_key, owner_of
from proxy_core.cli import main
from proxy_core.db import Database, DatabaseConfig
from tests.db.backends import write_config


def keys(config: str, *args: str) -> int:
    return main(["keys", *args, "-c", config])


def stored(url: str) -> list[dict[str, object]]:
    async def read() -> list[dict[str, object]]:
        db = Database(DatabaseConfig(url=url))
        await db.connect()
        try:
            return await db.fetch("SELECT * FROM virtual_keys ORDER BY created_at")
        finally:
            await db.close()

    return asyncio.run(read())


def test_keys_commands(sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(write_config(tmp_path / "proxy.toml", sqlite_url))
    assert main(["users", "add", "ada@example.com", "-c", config]) == 0
    user_id = capsys.readouterr().out.split()[-1]

    assert keys(config, "issue", "ada@example.com") == 0
    key = capsys.readouterr().out.strip()
    assert owner_of(key) == user_id
    rows = stored(sqlite_url)
    assert [row["key_hash"] for row in rows] == [hash_key(key)]  # only the hash is kept
    assert key not in repr(rows)

    assert keys(config, "issue", "ada@example.com") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ada@example.com already has a working key") and key not in err

    assert keys(config, "rotate", "ada@example.com", "--grace-hours", "1") == 0
    rotated = capsys.readouterr().out.strip()
    assert rotated != key and owner_of(rotated) == user_id

    assert keys(config, "list") == 0
    header, *lines = [re.split(r"\s{2,}", line) for line in capsys.readouterr().out.splitlines()]
    assert header[:4] == ["EMAIL", "KEY", "STATE", "EXPIRES"]
    assert [(email, prefix, state) for email, prefix, state, *_ in lines] == [
        ("ada@example.com", display_prefix(key), "grace"),
        ("ada@example.com", display_prefix(rotated), "active"),
    ]

    assert keys(config, "revoke", "ada@example.com") == 0
    assert capsys.readouterr().out == "revoked 2 key(s) of ada@example.com\n"
    assert keys(config, "list") == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [re.split(r"\s{2,}", line)[2] for line in rows] == ["revoked", "revoked"]


@pytest.mark.parametrize("action", ["issue", "rotate", "revoke"])
def test_an_unknown_email_is_a_readable_error(
    action: str, sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write_config(tmp_path / "proxy.toml", sqlite_url))
    assert keys(config, action, "nobody@example.com") == 1
    captured = capsys.readouterr()
    assert captured.err == "error: no user with email nobody@example.com\n"
    assert captured.out == "" and "Traceback" not in captured.err


def test_list_with_no_keys(sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(write_config(tmp_path / "proxy.toml", sqlite_url))
    assert keys(config, "list") == 0
    assert capsys.readouterr().out == "no keys yet\n"
