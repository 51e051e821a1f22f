"""Every missing ``${VAR}`` is named in one error, with where it is used, and no value is ever shown."""

from __future__ import annotations

import pytest

from proxy_core import redact
from proxy_core.config import ConfigError, parse_config

TEXT = """
[server]
public_url = "${PUBLIC_URL}"

[[pipeline]]
stage = "upstream"
url = "${UPSTREAM_URL}"

[database]
url = "postgresql://app:${DB_PASSWORD}@${DB_HOST:-localhost}/app"
backup = "${DB_PASSWORD}"
literal = "$${NOT_A_VARIABLE}"
"""


@pytest.fixture(autouse=True)
def own_redaction_masks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Values loaded here are remembered process-wide as secrets to mask; keep them to this module."""
    monkeypatch.setattr(redact, "_remembered", set(redact._remembered))
    monkeypatch.setattr(redact, "_pattern", redact._pattern)


def error_of(text: str, env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "proxy.toml", env)
    return str(caught.value)


def test_every_missing_variable_is_named_once_with_each_place() -> None:
    message = error_of(TEXT, {})
    assert message == (
        "proxy.toml: 3 environment variables are not set: "
        "PUBLIC_URL (for [server] key 'public_url'); "
        "UPSTREAM_URL (for [[pipeline]] #1 key 'url'); "
        "DB_PASSWORD (for [database] key 'url', [database] key 'backup') "
        "(use ${NAME:-default} for a default)"
    )


def test_variables_with_defaults_or_escaped_are_not_missing() -> None:
    message = error_of(TEXT, {"PUBLIC_URL": "https://cloud.example.com", "DB_PASSWORD": "hunter2-secret"})
    assert "DB_HOST" not in message and "NOT_A_VARIABLE" not in message
    assert message == (
        "proxy.toml: [[pipeline]] #1: key 'url': environment variable UPSTREAM_URL is not set "
        "(use ${UPSTREAM_URL:-default} for a default)"
    )


def test_values_that_are_set_are_never_echoed() -> None:
    message = error_of(TEXT, {"DB_PASSWORD": "hunter2-secret"})
    assert "hunter2-secret" not in message
    assert message.startswith("proxy.toml: 2 environment variables are not set: PUBLIC_URL ")
    assert "UPSTREAM_URL (for [[pipeline]] #1 key 'url')" in message


def test_nothing_missing_interpolates_as_before() -> None:
    env = {
        "PUBLIC_URL": "https://cloud.example.com",
        "UPSTREAM_URL": "http://10.0.0.5:4111",
        "DB_PASSWORD": "pw",
    }
    config = parse_config(TEXT, "proxy.toml", env)
    assert config.sections["database"]["url"] == "postgresql://app:pw@localhost/app"
    assert config.sections["database"]["literal"] == "${NOT_A_VARIABLE}"
    assert str(config.server.public_url) == "https://cloud.example.com/"
