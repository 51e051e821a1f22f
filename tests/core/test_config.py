"""proxy.toml loading: every error names the file, the table and the key, and says what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from proxy_core.app import build_stages, make_context
from proxy_core.config import ConfigError, load_config, parse_config
from proxy_core.stage import StageConfig


def parse(text: str, env: dict[str, str] | None = None) -> object:
    return parse_config(text, "proxy.toml", env or {})


def error_of(text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        config = parse_config(text, "proxy.toml", env or {})
        build_stages(make_context(config))
    return str(info.value)


def test_defaults_without_a_server_table() -> None:
    config = parse_config("", "proxy.toml", {})
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 8080
    assert config.pipeline == ()


def test_byte_sizes_and_networks_are_parsed() -> None:
    config = parse_config(
        '[server]\nmax_body_size = "2MiB"\ntrusted_proxies = ["10.0.0.0/8", "::1/128"]\n', "proxy.toml", {}
    )
    assert config.server.max_body_size == 2 * 1024 * 1024
    assert [str(n) for n in config.server.trusted_proxies] == ["10.0.0.0/8", "::1/128"]


def test_websocket_settings_reach_the_forwarder() -> None:
    config = parse_config(
        '[server]\nwebsocket_max_message = "1MiB"\nwebsocket_compression = false\n'
        "websocket_buffer_limit = 0\nwebsocket_close_timeout = 2.5\n",
        "proxy.toml",
        {},
    )
    settings = make_context(config).forwarder.websocket
    assert (settings.max_message, settings.compression, settings.buffer_limit) == (1024 * 1024, False, 0)
    assert settings.close_timeout == 2.5
    defaults = make_context(parse_config("", "proxy.toml", {})).forwarder.websocket
    assert (defaults.max_message, defaults.compression) == (4 * 1024 * 1024, True)


def test_a_bad_websocket_limit_names_its_key() -> None:
    message = error_of('[server]\nwebsocket_max_message = "lots"\n')
    assert message.startswith("proxy.toml: [server]: key 'websocket_max_message': ")
    assert "key 'websocket_close_timeout'" in error_of("[server]\nwebsocket_close_timeout = 0\n")


def test_invalid_toml_names_the_file_and_position() -> None:
    message = error_of("[server\nport = 1")
    assert message.startswith("proxy.toml: not valid TOML")
    assert "line 1" in message


def test_wrong_type_names_table_key_and_expectation() -> None:
    message = error_of('[server]\nport = "eighty"\n')
    assert message == (
        "proxy.toml: [server]: key 'port': input should be a valid integer, "
        "unable to parse string as an integer (got 'eighty')"
    )


def test_out_of_range_value() -> None:
    assert "key 'port': input should be less than or equal to 65535" in error_of("[server]\nport = 70000\n")


def test_unknown_server_key_is_an_error() -> None:
    message = error_of("[server]\nprot = 8080\n")
    assert message == (
        "proxy.toml: [server]: key 'prot': unknown key (check the spelling, or the stage's documentation) (got 8080)"
    )


def test_pipeline_entry_without_a_stage_name() -> None:
    message = error_of('[[pipeline]]\nurl = "http://x"\n')
    assert message == "proxy.toml: [[pipeline]] #1: key 'stage': expected the stage's name, a string"


def test_unknown_stage_lists_the_installed_ones() -> None:
    message = error_of('[[pipeline]]\nstage = "nope"\n')
    assert message.startswith("proxy.toml: [[pipeline]] #1 (stage 'nope'): key 'stage': unknown stage 'nope'")
    assert "installed stages:" in message
    assert "upstream" in message


def test_stage_option_errors_name_the_pipeline_entry() -> None:
    text = '[[pipeline]]\nstage = "upstream"\nurl = "http://a"\n[[pipeline]]\nstage = "upstream"\nurl = "ftp://x"\n'
    message = error_of(text)
    assert message == (
        "proxy.toml: [[pipeline]] #2 (stage 'upstream'): key 'url': URL scheme should be 'http' or 'https' (got 'ftp://x')"
    )


def test_missing_required_stage_option() -> None:
    message = error_of('[[pipeline]]\nstage = "upstream"\n')
    assert message == "proxy.toml: [[pipeline]] #1 (stage 'upstream'): key 'url': this key is required"


def test_environment_interpolation_and_defaults() -> None:
    text = '[[pipeline]]\nstage = "upstream"\nurl = "${UP_URL}"\n[database]\nurl = "${DB:-sqlite:///x.db}"\nlit = "$${X}"\n'
    config = parse_config(text, "proxy.toml", {"UP_URL": "http://127.0.0.1:1"})
    assert config.pipeline[0].options["url"] == "http://127.0.0.1:1"
    assert config.sections["database"]["url"] == "sqlite:///x.db"
    assert config.sections["database"]["lit"] == "${X}"


def test_missing_environment_variable_names_table_and_key() -> None:
    message = error_of('[database]\nurl = "${DATABASE_URL}"\n')
    assert message == (
        "proxy.toml: [database]: key 'url': environment variable DATABASE_URL is not set "
        "(use ${DATABASE_URL:-default} for a default)"
    )


def test_values_from_the_environment_are_never_echoed() -> None:
    text = '[[pipeline]]\nstage = "upstream"\nurl = "${SECRET_URL}"\n'
    message = error_of(text, {"SECRET_URL": "sk-very-secret"})
    assert "key 'url'" in message
    assert "sk-very-secret" not in message


class _Section(StageConfig):
    url: str
    pool: int = Field(5, ge=1)


def test_shared_sections_are_validated_on_demand() -> None:
    config = parse_config('[database]\nurl = "x"\npool = 0\n', "proxy.toml", {})
    with pytest.raises(ConfigError) as info:
        config.section("database", _Section)
    assert (
        str(info.value)
        == "proxy.toml: [database]: key 'pool': input should be greater than or equal to 1 (got 0)"
    )
    ok = parse_config('[database]\nurl = "x"\n', "proxy.toml", {})
    assert ok.section("database", _Section) is ok.section("database", _Section)


def test_top_level_values_must_be_tables() -> None:
    assert error_of('name = "x"\n') == (
        "proxy.toml: key 'name': top-level keys must be tables such as [database]"
    )


def test_config_is_frozen() -> None:
    config = parse_config("[server]\nport = 1\n", "proxy.toml", {})
    with pytest.raises(ValueError):
        config.server.port = 2  # type: ignore[misc]


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.toml")
    assert str(info.value) == f"{tmp_path / 'missing.toml'}: cannot read the file: No such file or directory"
