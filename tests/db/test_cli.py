"""``shmastra-cloud db upgrade|status`` through the real entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy_core.cli import main
from tests.db.backends import write_config


def test_upgrade_then_status(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(write_config(tmp_path / "proxy.toml", db_url))

    assert main(["db", "status", "-c", config]) == 0
    out = capsys.readouterr().out
    assert (
        "auth: version 0000, pending: 0001_users, 0002_sessions, 0003_login_codes, 0004_sso, "
        "0005_login_codes_per_flow, 0006_last_sign_in" in out
    )
    assert "sandbox_router: version 0000, pending: 0001_sandboxes, 0002_sandbox_runtime" in out

    assert main(["db", "upgrade", "-c", config]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "applied auth 0001_users",
        "applied auth 0002_sessions",
        "applied auth 0003_login_codes",
        "applied auth 0004_sso",
        "applied auth 0005_login_codes_per_flow",
        "applied auth 0006_last_sign_in",
        "applied manage 0001_audit_log",
        "applied manage 0002_admin_tokens",
        "applied manage 0003_rollouts",
        "applied manage 0004_rollout_woken",
        "applied proxy_core 0001_rate_limits",
        "applied sandbox_router 0001_sandboxes",
        "applied sandbox_router 0002_sandbox_runtime",
        "applied vkey 0001_virtual_keys",
        "applied vkey 0002_usage",
        "applied vkey 0003_usage_details",
        "16 migration(s) applied",
    ]

    assert main(["db", "upgrade", "-c", config]) == 0
    assert capsys.readouterr().out == "up to date: nothing to apply\n"

    assert main(["db", "status", "-c", config]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == [
        "auth: version 0006, up to date",
        "manage: version 0004, up to date",
        "proxy_core: version 0001, up to date",
        "sandbox_router: version 0002, up to date",
        "vkey: version 0003, up to date",
    ]


def test_unreachable_database_is_an_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(
        write_config(tmp_path / "proxy.toml", "postgresql://postgres@127.0.0.1:1/test", connect_timeout=2)
    )
    assert main(["db", "upgrade", "-c", config]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("error: the database at 127.0.0.1:1/test is unreachable")
    assert "Traceback" not in captured.err


def test_bad_database_url_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(write_config(tmp_path / "proxy.toml", "mysql://db/x"))
    assert main(["db", "status", "-c", config]) == 1
    assert "[database]: key 'url'" in capsys.readouterr().err
