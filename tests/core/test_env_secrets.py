"""No value that came from the environment appears in a configuration error, a log line or a
``/readyz`` detail. The configuration half walks every field of every installed stage's config (and
of ``[server]`` and ``[database]``), recursively into sub-tables, and tries each way in: the value
itself invalid, a misspelt key or sub-table holding it, and a model-level check failing on another
key while it sits in the table."""

from __future__ import annotations

import io
import json
import logging
import typing
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web
from pydantic import BaseModel

from proxy_core import ConfigError, Next, Readiness, Stage, StageConfig, parse_config
from proxy_core.config import ServerConfig
from proxy_core.db.config import DatabaseConfig
from proxy_core.logs import setup_logging
from proxy_core.registry import installed_stages, load_stage_class
from proxy_core.testing import make_app

SECRET = "s3cr3t-" + "Q" * 40  # long enough for any length check, so checks elsewhere fail
SHORT = "Zq9"
ENV = {"SECRET": SECRET, "SHORT": SHORT}


def _models_in(annotation: Any) -> Iterator[tuple[type[BaseModel], bool]]:
    """Sub-models an annotation holds, and whether each sits under a dict (``providers.<name>``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, False
        return
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is dict and len(args) == 2:
        for model, _ in _models_in(args[1]):
            yield model, True
        return
    for arg in args:
        yield from _models_in(arg)


def _literals(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    return [v for arg in typing.get_args(annotation) for v in _literals(arg)]


def _fields(model: type[BaseModel], path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every (path, annotation) in ``model``, sub-models included; sub-model paths are tables."""
    yield path, model
    for name, info in model.model_fields.items():
        yield (*path, name), info.annotation
        for sub, keyed in _models_in(info.annotation):
            yield from _fields(sub, (*path, name, "x") if keyed else (*path, name))


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


def _set(table: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        table = table.setdefault(part, {})
        if not isinstance(table, dict):
            return
    table[path[-1]] = value


def _config_text(owner: str, table: dict[str, Any]) -> str:
    body = "".join(f"{json.dumps(k)} = {_toml(v)}\n" for k, v in table.items())
    if owner in ("server", "database"):
        return f"[{owner}]\n{body}"
    return f'[[pipeline]]\nstage = "{owner}"\n{body}'


def _owners() -> list[tuple[str, type[BaseModel]]]:
    owners: list[tuple[str, type[BaseModel]]] = [("server", ServerConfig), ("database", DatabaseConfig)]
    for name in sorted(installed_stages()):
        owners.append((name, load_stage_class(name).config_class))
    return owners


def _problem(owner: str, model: type[BaseModel], table: dict[str, Any]) -> str | None:
    """The error message the table gives (``None`` when it is valid)."""
    try:
        config = parse_config(_config_text(owner, table), "proxy.toml", ENV)
        if owner == "database":
            config.section("database", DatabaseConfig)
        elif owner != "server":
            config.stage_config(config.pipeline[0], model)  # type: ignore[type-var]
    except ConfigError as exc:
        return str(exc)
    return None


OWNERS = _owners()


def test_the_walk_covers_every_installed_stage() -> None:
    assert {"auth", "upstream", "vkey"} <= {name for name, _ in OWNERS}
    auth = dict(OWNERS)["auth"]
    paths = {path for path, _ in _fields(auth)}
    assert ("email_code", "smtp", "password") in paths and ("workos", "api_key") in paths


@pytest.mark.parametrize(("owner", "model"), OWNERS, ids=[name for name, _ in OWNERS])
def test_no_env_value_in_any_single_field_error(owner: str, model: type[BaseModel]) -> None:
    errors = 0
    shapes: list[Any] = [f"${{{var}}}" for var in ENV]
    shapes += [[f"${{{var}}}"] for var in ENV]
    shapes += [{"x": "${SECRET}", "password": "${SHORT}"}]
    for path, annotation in _fields(model):
        if path:  # the key's value is the secret, as a string, a list or a table
            for shape in shapes:
                table: dict[str, Any] = {}
                _set(table, path, shape)
                problem = _problem(owner, model, table)
                if problem is not None:
                    errors += 1
                    assert SECRET not in problem and SHORT not in problem, problem
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            # a misspelt key, and a misspelt sub-table (``[smtpp]``) holding secrets
            for extra in (
                {"bogus_key": "${SECRET}"},
                {"bogus_table": {"password": "${SECRET}", "u": "${SHORT}"}},
            ):
                table = {}
                for key, value in extra.items():
                    if path:
                        _set(table, (*path, key), value)
                    else:
                        table[key] = value
                problem = _problem(owner, model, table)
                assert problem is not None, path  # unknown, or a required key missing first
                assert SECRET not in problem and SHORT not in problem, problem
    assert errors  # the walk did provoke errors


@pytest.mark.parametrize(("owner", "model"), OWNERS, ids=[name for name, _ in OWNERS])
def test_no_env_value_when_another_key_fails_beside_it(owner: str, model: type[BaseModel]) -> None:
    """The secret sits in one key while another key (or a model-level check, fed every literal
    choice and odd numbers) fails: the message names the failure, never the secret."""
    fields = [
        (p, a) for p, a in _fields(model) if p and not (isinstance(a, type) and issubclass(a, BaseModel))
    ]
    failures = 0
    for secret_path, _ in fields:
        for other_path, annotation in fields:
            if other_path == secret_path:
                continue
            for odd in [-1, 1, "zz", True, *_literals(annotation)]:
                table: dict[str, Any] = {}
                _set(table, secret_path, "${SECRET}")
                _set(table, other_path, odd)
                problem = _problem(owner, model, table)
                if problem is not None:
                    failures += 1
                    assert SECRET not in problem, problem
    assert failures


def test_the_reported_example_session_lifetime_against_a_secret() -> None:
    text = '[[pipeline]]\nstage = "auth"\ncookie_secret = "${SECRET}"\nsession_lifetime = 10\nidle_timeout = 20\n'
    config = parse_config(text, "proxy.toml", ENV)
    with pytest.raises(ConfigError) as caught:
        config.stage_config(config.pipeline[0], load_stage_class("auth").config_class)
    assert "session_lifetime must not be shorter than idle_timeout" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_values_from_the_file_itself_are_still_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config('[server]\nlog_level = "loud"\n', "proxy.toml", ENV)
    assert "(got 'loud')" in str(caught.value)


def test_a_stage_constructor_error_is_scrubbed_too() -> None:
    text = '[[pipeline]]\nstage = "upstream"\nurl = "http://user:${SHORT}@${SECRET}.example"\n'
    problem = ""
    try:
        config = parse_config(text, "proxy.toml", ENV)
        from proxy_core.app import build_stages, make_context

        build_stages(make_context(config))
    except ConfigError as exc:
        problem = str(exc)
    assert SECRET not in problem and SHORT not in problem


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_log_lines_never_carry_an_env_value(fmt: str) -> None:
    parse_config(
        '[server]\npublic_url = "${URL}"\n[x]\ntoken = "${SECRET}"\n',
        "p.toml",
        ENV | {"URL": "https://cloud.example"},
    )
    stream = io.StringIO()
    setup_logging("info", fmt, stream)
    try:
        logging.getLogger("test").warning(
            "connecting with %s",
            f"token={SECRET}",
            extra={"fields": {"dsn": f"postgresql://u:{SECRET}@h/db"}},
        )
        logging.getLogger("test").info("public at https://cloud.example")
    finally:
        setup_logging("info", "json")
    output = stream.getvalue()
    assert SECRET not in output
    assert output.count("***") == 2
    assert "https://cloud.example" in output  # a public URL without credentials is no secret


class LeakyStage(Stage[StageConfig]):
    name = "leaky"

    async def __call__(self, request: web.Request, next: Next) -> web.StreamResponse:
        return await next(request)

    async def readiness(self) -> Readiness:
        return Readiness(False, f"cannot reach postgresql://app:{SECRET}@db/prod")


async def test_readyz_details_never_carry_an_env_value(aiohttp_client: Any) -> None:
    config = parse_config('[server]\naccess_log = false\n[x]\ntoken = "${SECRET}"\n', "p.toml", ENV)
    client = await aiohttp_client(make_app([lambda context: LeakyStage(StageConfig(), context)], config))
    response = await client.get("/readyz")
    assert response.status == 503
    body = await response.text()
    assert SECRET not in body and "cannot reach postgresql://app:***@db/prod" in body


def test_command_errors_never_carry_an_env_value(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], unused_tcp_port: int
) -> None:
    from proxy_core.cli import main

    monkeypatch.setenv("DB_PASSWORD", SECRET)
    config = tmp_path / "proxy.toml"
    config.write_text(
        f'[database]\nurl = "postgresql://app:${{DB_PASSWORD}}@127.0.0.1:{unused_tcp_port}/db"\nconnect_timeout = 1\n'
    )
    assert main(["db", "status", "--config", str(config)]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and SECRET not in captured.err + captured.out


def test_a_stage_named_from_the_environment_is_not_echoed() -> None:
    from proxy_core.app import build_stages, make_context

    config = parse_config('[[pipeline]]\nstage = "${SECRET}"\n', "proxy.toml", ENV)
    with pytest.raises(ConfigError) as caught:
        build_stages(make_context(config))
    assert "unknown stage" in str(caught.value) and SECRET not in str(caught.value)
