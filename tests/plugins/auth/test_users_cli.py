"""``shmastra-cloud users ...`` through the real entry point, on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy_core.cli import main
from tests.db.backends import write_config


def run(config: Path, *args: str) -> int:
    return main(["users", *args, "-c", str(config)])


def test_users_commands(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path / "proxy.toml", db_url)

    assert run(config, "list") == 0  # a brand-new database is migrated first
    assert capsys.readouterr().out == "no users yet\n"

    assert run(config, "add", "Ann@example.com", "--admin", "--name", "Ann") == 0
    assert capsys.readouterr().out.startswith("added Ann@example.com  admin  Ann  ")
    assert run(config, "add", "bob@example.com") == 0
    capsys.readouterr()

    assert run(config, "add", "ann@EXAMPLE.com") == 1
    assert capsys.readouterr().err == "error: email already exists\n"

    assert run(config, "disable", "BOB@example.com") == 0
    assert capsys.readouterr().out.startswith("disabled bob@example.com  member (disabled)  ")
    assert run(config, "set-role", "bob@example.com", "admin") == 0
    capsys.readouterr()
    assert run(config, "enable", "bob@example.com") == 0
    capsys.readouterr()

    assert run(config, "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[:2] for line in lines] == [
        ["Ann@example.com", "admin"],
        ["bob@example.com", "admin"],
    ]

    assert run(config, "disable", "nobody@example.com") == 1
    assert capsys.readouterr().err == "error: no user with email nobody@example.com\n"


def test_set_role_refuses_unknown_roles(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "proxy.toml", sqlite_url)
    with pytest.raises(SystemExit) as exited:
        run(config, "set-role", "ann@example.com", "owner")
    assert exited.value.code == 2
    assert "invalid choice: 'owner'" in capsys.readouterr().err
