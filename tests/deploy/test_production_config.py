"""``shmastra-cloud check`` on examples/production.toml, through the installed command: it passes with
the deployment's environment set, and without it names every missing variable in one error, never
echoing a value that is set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .layout import PRODUCTION, required_variables

COMMAND = Path(sys.executable).parent / "shmastra-cloud"

DEPLOYMENT_ENV = {
    "PUBLIC_URL": "https://cloud.example.com",
    "DATABASE_URL": "postgresql://shmastra:db-password-value@db.example.com:5432/shmastra?sslmode=require",
    "COOKIE_SECRET": "cookie-secret-value-0123456789abcdefghijklmnop",
    "WORKOS_CLIENT_ID": "client_01HXYZ",
    "WORKOS_API_KEY": "sk_test_workos-key-value",
    "E2B_API_KEY": "e2b_e2b-key-value",
    "ADMIN_EMAIL": "ops@example.com",
}


def check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    return subprocess.run(
        [str(COMMAND), "check", "--config", str(PRODUCTION)],
        env=base | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_example_names_exactly_the_variables_a_deployment_sets() -> None:
    assert required_variables() == set(DEPLOYMENT_ENV)


def test_check_passes_with_the_environment_set() -> None:
    result = check(DEPLOYMENT_ENV)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{PRODUCTION}: OK (3 stages: vkey, auth, sandbox_router)"
    for value in DEPLOYMENT_ENV.values():
        assert value not in result.stdout + result.stderr


def test_check_without_the_environment_names_each_missing_variable() -> None:
    result = check({})
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {PRODUCTION}: {len(DEPLOYMENT_ENV)} environment variables are not set: ")
    for name in DEPLOYMENT_ENV:
        assert f"{name} (for " in line
    assert "WORKOS_API_KEY (for [[pipeline]] #2 key 'workos.api_key')" in line


def test_a_partial_environment_names_only_what_is_missing_and_echoes_nothing() -> None:
    present = {k: v for k, v in DEPLOYMENT_ENV.items() if k not in ("COOKIE_SECRET", "E2B_API_KEY")}
    result = check(present)
    assert result.returncode == 1
    assert "2 environment variables are not set: " in result.stderr
    assert "COOKIE_SECRET (for [[pipeline]] #2 key 'cookie_secret')" in result.stderr
    assert "E2B_API_KEY (for [[pipeline]] #3 key 'e2b.api_key')" in result.stderr
    for value in present.values():
        assert value not in result.stderr
