"""``proxy.toml`` → frozen, typed configuration.

Every error names the file, the table and the key, and says what was expected. ``${VAR}`` and
``${VAR:-default}`` pull secrets from the environment; ``$${`` writes a literal ``${``. Values that came
from the environment are never echoed back in error messages.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import AnyHttpUrl, BaseModel, ByteSize, ConfigDict, Field, ValidationError

from .paths import BASE_DIR
from .redact import redact, redact_values, remember


class StageConfig(BaseModel):
    """Base class of every stage's (and shared section's) typed config.

    Unknown keys are errors, so a typo in ``proxy.toml`` is reported instead of silently ignored.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


M = TypeVar("M", bound=StageConfig)

_ENV_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """A configuration problem, with enough context to fix it without reading code."""

    def __init__(self, file: str, table: str, key: str, problem: str) -> None:
        # whatever raised it, no remembered secret is ever shown (a stage named "${X}" is in ``table``)
        table, problem = redact(table), redact(problem)
        self.file, self.table, self.key, self.problem = file, table, key, problem
        where = f"{file}: {table}" if table else file
        if key:
            where += f": key '{key}'"
        super().__init__(f"{where}: {problem}")


class ServerConfig(StageConfig):
    """The ``[server]`` table."""

    host: str = "127.0.0.1"
    """Address to listen on (``0.0.0.0`` in a container)."""
    port: int = Field(8080, ge=0, le=65535)
    """Port to listen on."""
    public_url: AnyHttpUrl | None = None
    """The URL users reach the proxy at (behind a load balancer: its address, not this process's)."""
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    """Networks (CIDR) whose ``X-Forwarded-*`` / ``Forwarded`` headers are believed."""
    workers: int = Field(1, ge=1, le=256)
    """Worker processes sharing the port (SO_REUSEPORT); ``/metrics`` adds them up."""
    uvloop: bool = True
    """Use uvloop when it is installed."""
    max_header_size: ByteSize = Field(ByteSize(8190), gt=0)
    """Longest request line (414 past it) and header field (431 past it)."""
    max_body_size: ByteSize = Field(ByteSize(100 * 1024 * 1024), ge=0)
    """Largest request body (413 past it); ``0`` for no limit."""
    keepalive_timeout: float = Field(75.0, gt=0)
    """Seconds an idle client connection is kept open."""
    shutdown_timeout: float = Field(30.0, ge=0)
    """Seconds in-flight requests get to finish on SIGTERM; streams still open then are cut (an
    orchestrator's grace period must be longer)."""
    websocket_max_message: ByteSize = Field(ByteSize(4 * 1024 * 1024), ge=0)
    """Largest WebSocket message crossing the proxy (compressed size under permessage-deflate); a larger
    one closes the connection with 1009; ``0`` for no limit."""
    websocket_compression: bool = True
    """Let the client and the upstream negotiate permessage-deflate, end to end."""
    websocket_buffer_limit: ByteSize = Field(ByteSize(64 * 1024 * 1024), ge=0)
    """Bytes all WebSockets of a worker may hold for slow receivers; past it new upgrades get 503;
    ``0`` for no limit."""
    websocket_close_timeout: float = Field(10.0, gt=0)
    """Seconds a closing handshake may take before both connections are dropped."""
    access_log: bool = True
    """One line per request (path without its query string)."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """The lowest level logged."""
    log_format: Literal["auto", "json", "text"] = "auto"
    """``auto``: readable text on a terminal, JSON lines otherwise."""


@dataclass(frozen=True, slots=True)
class StageSpec:
    """One ``[[pipeline]]`` entry: the stage name, its position and its own raw table."""

    name: str
    index: int
    options: Mapping[str, Any]

    @property
    def table(self) -> str:
        return f"[[pipeline]] #{self.index + 1} (stage '{self.name}')"


@dataclass(frozen=True)
class ProxyConfig:
    """The whole file, validated where the core knows the shape; stage and shared sections on demand."""

    file: str
    server: ServerConfig
    pipeline: tuple[StageSpec, ...]
    sections: Mapping[str, Mapping[str, Any]]
    from_env: frozenset[str] = frozenset()
    """Dotted paths (``pipeline.0.cookie_secret``) whose values came from the environment."""
    env_values: frozenset[str] = field(default=frozenset(), repr=False)
    """The values themselves, so messages can leave them out."""
    defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """The embedding application's defaults for shared sections (``{"database": {"url": ...}}``),
    under whatever the file itself says."""
    _parsed: dict[str, StageConfig] = field(default_factory=dict, repr=False, compare=False)

    def section(self, name: str, model: type[M]) -> M:
        """A shared section such as ``[database]``, validated against ``model`` (cached per name)."""
        cached = self._parsed.get(name)
        if cached is None:
            table = {**self.defaults.get(name, {}), **self.sections.get(name, {})}
            cached = validate(model, table, self.file, f"[{name}]", name, self.from_env, self.env_values)
            self._parsed[name] = cached
        if not isinstance(cached, model):
            raise TypeError(f"section [{name}] was already read as {type(cached).__name__}")
        return cached

    def stage_config(self, spec: StageSpec, model: type[M]) -> M:
        where = f"pipeline.{spec.index}"
        return validate(model, spec.options, self.file, spec.table, where, self.from_env, self.env_values)


def load_config(
    path: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    defaults: Mapping[str, Mapping[str, Any]] | None = None,
) -> ProxyConfig:
    """Read, interpolate and validate ``path``. Raises :class:`ConfigError` naming file, table and key.
    ``defaults``: the embedding application's defaults for shared sections."""
    file = str(path)
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(file, "", "", f"cannot read the file: {exc.strerror or exc}") from None
    return parse_config(raw, file, os.environ if env is None else env, defaults)


def parse_config(
    text: str,
    file: str,
    env: Mapping[str, str],
    defaults: Mapping[str, Mapping[str, Any]] | None = None,
) -> ProxyConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "", "", f"not valid TOML: {exc}") from None
    _refuse_missing_variables(data, file, env)
    from_env: set[str] = set()
    values: set[str] = set()
    data = _interpolate(data, file, "", env, from_env, values)
    remember(values)
    env_paths, env_values = frozenset(from_env), frozenset(values)

    server = validate(ServerConfig, data.pop("server", {}), file, "[server]", "server", env_paths, env_values)
    pipeline_raw = data.pop("pipeline", [])
    if not isinstance(pipeline_raw, list) or not all(isinstance(t, dict) for t in pipeline_raw):
        raise ConfigError(file, "[[pipeline]]", "", 'expected an array of tables: [[pipeline]] stage = "..."')
    specs = []
    for index, table in enumerate(pipeline_raw):
        options = dict(table)
        name = options.pop("stage", None)
        if not isinstance(name, str) or not name:
            raise ConfigError(
                file, f"[[pipeline]] #{index + 1}", "stage", "expected the stage's name, a string"
            )
        specs.append(StageSpec(name, index, options))
    for name, section in data.items():
        if not isinstance(section, dict):
            raise ConfigError(file, "", name, "top-level keys must be tables such as [database]")
    return ProxyConfig(file, server, tuple(specs), data, env_paths, env_values, defaults or {})


def validate(
    model: type[M],
    table: Mapping[str, Any],
    file: str,
    where: str,
    path: str,
    from_env: frozenset[str] = frozenset(),
    env_values: frozenset[str] = frozenset(),
) -> M:
    """Validate one table, turning the first pydantic error into a :class:`ConfigError`.

    The offending value is echoed only when nothing in it came from the environment: not the key's
    own value, nor any value inside it (a misspelt table holding ``password = "${X}"``), nor the
    table a model-level check looked at. Messages a validator wrote are scrubbed of those values too.
    """
    try:
        return model.model_validate(dict(table), context={BASE_DIR: Path(file).absolute().parent})
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        key = ".".join(str(part) for part in error["loc"])
        problem = _describe(error)
        full = f"{path}.{key}" if key else path
        tainted = any(p == full or p.startswith(full + ".") or full.startswith(p + ".") for p in from_env)
        if not tainted and error["type"] != "missing" and "input" in error:
            problem += f" (got {error['input']!r})"
        problem = redact_values(problem, (v for v in env_values if len(v) >= 3))
        raise ConfigError(file, where, key, problem) from None


def _describe(error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return "this key is required"
    if kind == "extra_forbidden":
        return "unknown key (check the spelling, or the stage's documentation)"
    message = str(error["msg"])
    if message[1:2].islower():  # "Input should…" reads better mid-sentence; keep acronyms such as "URL"
        message = message[0].lower() + message[1:]
    return message


def _table_and_key(path: str) -> tuple[str, str]:
    parts = path.split(".")
    if parts[0] == "pipeline" and len(parts) > 1 and parts[1].isdigit():
        return f"[[pipeline]] #{int(parts[1]) + 1}", ".".join(parts[2:])
    if len(parts) == 1:
        return "", parts[0]
    return f"[{parts[0]}]", ".".join(parts[1:])


def _refuse_missing_variables(data: Any, file: str, env: Mapping[str, str]) -> None:
    """Raise one :class:`ConfigError` naming every ``${VAR}`` (without a default) that ``env`` lacks.

    An operator setting up a new deployment then fixes them all at once instead of one per run. Only
    names and places are shown: a missing variable has no value to leak.
    """
    places: dict[str, list[str]] = {}
    for path, text in _strings(data, ""):
        for match in _ENV_REF.finditer(text):
            name = match.group(1)
            if name is not None and name not in env and match.group(2) is None:
                places.setdefault(name, []).append(path)
    if not places:
        return
    if len(places) == 1 and len(paths := next(iter(places.values()))) == 1:
        (name,) = places
        table, key = _table_and_key(paths[0])
        problem = f"environment variable {name} is not set (use ${{{name}:-default}} for a default)"
        raise ConfigError(file, table, key, problem)
    listed = "; ".join(f"{name} (for {', '.join(map(_place, paths))})" for name, paths in places.items())
    raise ConfigError(
        file,
        "",
        "",
        f"{len(places)} environment variables are not set: {listed} (use ${{NAME:-default}} for a default)",
    )


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string in a parsed TOML document with its dotted path (``pipeline.1.workos.api_key``)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}.{index}")


def _place(path: str) -> str:
    table, key = _table_and_key(path)
    return f"{table} key '{key}'" if table else f"key '{key}'"


def _interpolate(
    value: Any, file: str, path: str, env: Mapping[str, str], from_env: set[str], values: set[str]
) -> Any:
    if isinstance(value, str):
        if "$" not in value:
            return value

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            name, default = match.group(1), match.group(2)
            from_env.add(path)
            if name in env:
                values.add(env[name])
                return env[name]
            if default is not None:
                return default
            table, key = _table_and_key(path)
            raise ConfigError(
                file,
                table,
                key,
                f"environment variable {name} is not set (use ${{{name}:-default}} for a default)",
            )

        return _ENV_REF.sub(substitute, value)
    if isinstance(value, dict):
        return {
            k: _interpolate(v, file, f"{path}.{k}" if path else k, env, from_env, values)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_interpolate(v, file, f"{path}.{i}", env, from_env, values) for i, v in enumerate(value)]
    return value
