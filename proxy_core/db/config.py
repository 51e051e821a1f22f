"""The ``[database]`` section, and what its URL says about where the data lives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator

from ..config import StageConfig
from ..paths import base_dir

Dialect = Literal["postgres", "sqlite"]


class DatabaseConfig(StageConfig):
    """``[database]``: one store shared by every stage.

    ``url`` is ``postgresql://user:pass@host:5432/db?sslmode=require`` (asyncpg; any other query
    parameter becomes a server setting, e.g. ``search_path``) or ``sqlite:///relative/path.db`` /
    ``sqlite:////absolute/path.db`` (relative paths are resolved against the config file's folder).
    """

    url: str = Field("sqlite:///data/proxy.db", validate_default=True)
    """An embedding application sets its own default (``proxy_core.cli.main(defaults=...)``)."""
    min_pool_size: int = Field(1, ge=0, le=1000)
    """Postgres: connections each worker process keeps open."""
    max_pool_size: int = Field(10, ge=1, le=1000)
    """Postgres: most connections one worker process opens (replicas x workers x this must fit the server)."""
    connect_timeout: float = Field(5.0, gt=0)
    """Seconds per connection attempt."""
    retry_initial: float = Field(0.5, gt=0)
    """Seconds before the first reconnect attempt when the database is unreachable at start-up."""
    retry_max: float = Field(30.0, gt=0)
    """The back-off doubles up to this many seconds between attempts."""
    busy_timeout: float = Field(5.0, ge=0)
    """SQLite: how long a writer waits for another process's write lock before giving up."""
    batch_interval: float = Field(1.0, gt=0)
    """Seconds between flushes of batched hot-path writes (activity, usage)."""
    batch_max_rows: int = Field(100_000, ge=1)
    """Rows a batch writer keeps while the database is down; the oldest are dropped beyond this."""
    migrate_on_start: bool = True
    """Apply pending migrations when the proxy starts (under a lock; safe from every replica at once)."""

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str, info: ValidationInfo) -> str:
        found = target(url)
        base = base_dir(info)
        if found.path is not None and base is not None and not _sqlite_path(url).is_absolute():
            return "sqlite:///" + str(base / _sqlite_path(url))
        return url


@dataclass(frozen=True, slots=True)
class Target:
    """Where a URL points: the dialect, a display name without credentials, and the SQLite file."""

    dialect: Dialect
    display: str
    path: Path | None = None


def target(url: str) -> Target:
    """Parse ``url``; raises ValueError for schemes other than ``postgres(ql)://`` and ``sqlite://``."""
    parts = urlsplit(url)
    if parts.scheme in ("postgresql", "postgres"):
        host = parts.hostname or "localhost"
        port = parts.port or 5432
        database = parts.path.lstrip("/")
        return Target("postgres", f"{host}:{port}" + (f"/{database}" if database else ""))
    if parts.scheme == "sqlite":
        if parts.netloc:
            raise ValueError("a SQLite URL has no host: sqlite:///relative/path.db or sqlite:////abs/path.db")
        if not _sqlite_path(url).parts:
            raise ValueError("the SQLite URL names no file: sqlite:///data/store.db")
        path = _sqlite_path(url).absolute()
        return Target("sqlite", str(path), path)
    raise ValueError("the URL must start with postgresql:// (or postgres://) or sqlite:///")


def _sqlite_path(url: str) -> Path:
    """The file a ``sqlite:///relative`` or ``sqlite:////absolute`` URL names, as written."""
    path = urlsplit(url).path
    return Path(path[1:] if path.startswith("/") else path).expanduser()
