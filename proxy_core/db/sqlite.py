"""The SQLite backend: one connection on one dedicated thread, WAL mode, one writer at a time.

Every call hops to the thread that owns the connection; an ``asyncio.Lock`` keeps a transaction's
statements together (every transaction is ``BEGIN IMMEDIATE``: it takes the write lock up front, so
two processes never deadlock upgrading a read lock). Values are converted on the way in and out so
rows look exactly like the Postgres backend's (see :mod:`proxy_core.db.base`).
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import orjson

from .base import Leadership, Row, Transaction
from .config import Dialect
from .errors import (
    CheckViolation,
    ConstraintViolation,
    ForeignKeyViolation,
    NotNullViolation,
    QueryError,
    StoreError,
    Unavailable,
    UniqueViolation,
    field_of,
)
from .file_lock import FileKeyLocks

T = TypeVar("T")

_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%f+00:00"
"""Fixed width, always UTC, so timestamps compare correctly as text; migrations' defaults use
``strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')`` to produce the same shape."""

_PLACEHOLDER = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|/\*.*?\*/|\$(\d+)""", re.S)


def format_timestamp(value: datetime) -> str:
    """A datetime as stored: naive values are taken as UTC, as asyncpg does."""
    if value.tzinfo is not UTC:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")  # _TIMESTAMP_FORMAT, in a third of the time


def _parse_timestamp(raw: bytes) -> datetime:
    value = datetime.fromisoformat(raw.decode())
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Converters are looked up by a column's declared type. Registration is process-wide; the names
# are the Postgres type names the migrations use, so other sqlite3 users are unlikely to collide.
sqlite3.register_converter("UUID", lambda raw: uuid.UUID(raw.decode()))
sqlite3.register_converter("TIMESTAMPTZ", _parse_timestamp)
sqlite3.register_converter("BOOLEAN", lambda raw: raw not in (b"0", b""))
sqlite3.register_converter("JSONB", orjson.loads)


def _adapt(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if value is None or isinstance(value, str | int | float | bytes):
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, dict | list):
        return _json_text(value)
    return value


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _same(value: Any) -> Any:
    return value


@lru_cache(maxsize=4096)
def _uuid_text(value: uuid.UUID) -> str:
    """The same few users' and keys' ids fill a batch of rows (``UUID.__str__`` is Python code)."""
    return str(value)


_ADAPTERS: dict[type, Callable[[Any], Any]] = {
    str: _same,
    int: _same,
    float: _same,
    bytes: _same,
    type(None): _same,
    bool: int,
    uuid.UUID: _uuid_text,
    datetime: format_timestamp,
    dict: _json_text,
    list: _json_text,
}
""":func:`_adapt` by exact type, for the types rows are made of (a batch of usage rows is adapted on
the event loop); anything else, subclasses included, goes through :func:`_adapt`."""


def _params(args: Sequence[Any]) -> tuple[Any, ...]:
    adapters = _ADAPTERS
    return tuple(adapters.get(type(value), _adapt)(value) for value in args)


@lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """``$1`` → ``?1`` outside string literals, quoted names and comments."""
    return _PLACEHOLDER.sub(lambda m: "?" + m.group(1) if m.group(1) else m.group(0), sql)


def split_script(script: str) -> list[str]:
    """Complete statements of ``script`` (``executescript`` would commit the open transaction)."""
    statements, current = [], ""
    pieces = script.split(";")  # a ";" inside a string or comment leaves the statement incomplete
    for number, piece in enumerate(pieces):
        current += piece if number == len(pieces) - 1 else piece + ";"
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if any(line.strip() and not line.strip().startswith("--") for line in current.splitlines()):
        statements.append(current.strip())  # a last statement without its ";"
    return statements


def _rows(cursor: sqlite3.Cursor) -> list[Row]:
    if cursor.description is None:
        return []
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


def _now() -> str:
    return datetime.now(UTC).strftime(_TIMESTAMP_FORMAT)


def _open(path: Path, busy_timeout: float) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path,
        timeout=busy_timeout,
        isolation_level=None,
        detect_types=sqlite3.PARSE_DECLTYPES,
        check_same_thread=False,
    )
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")  # a committed batch survives a power cut too
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        conn.create_function("now", 0, _now)
        conn.create_function("gen_random_uuid", 0, lambda: str(uuid.uuid4()))
    except BaseException:
        conn.close()
        raise
    return conn


def _tables(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]


def _translate_error(conn: sqlite3.Connection | None, exc: sqlite3.Error, where: str) -> StoreError:
    """A driver error as a domain error; runs on the connection's thread (it may look up a table)."""
    if isinstance(exc, sqlite3.IntegrityError):
        return _constraint_error(conn, exc)
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return Unavailable(f"the SQLite database {where} is busy (another process holds the write lock)")
    if isinstance(exc, sqlite3.OperationalError) and "unable to open" in text:
        return Unavailable(f"cannot open the SQLite database {where}: {text}")
    return QueryError(f"database error: {text}")


def _constraint_error(conn: sqlite3.Connection | None, exc: sqlite3.IntegrityError) -> ConstraintViolation:
    kind = getattr(exc, "sqlite_errorname", "")
    detail = str(exc).split(": ", 1)[1] if ": " in str(exc) else ""
    table = field = None
    if detail.startswith("index '"):  # a unique index: "index 'users_email_key'"
        name = detail[len("index '") : -1]
        table = _owning_table(conn, name)
        field = field_of(name, table)
    elif "." in detail.split(",")[0]:  # column constraints: "users.email" or "t.a, t.b"
        columns = [part.strip() for part in detail.split(",")]
        table = columns[0].split(".")[0]
        field = ", ".join(column.split(".", 1)[1] for column in columns)
    elif detail:  # a named check: "users_role_check"
        table = _owning_table(conn, detail)
        field = field_of(detail, table)
    if kind in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"):
        return UniqueViolation(f"{field or 'value'} already exists", table=table, field=field)
    if kind == "SQLITE_CONSTRAINT_FOREIGNKEY":
        return ForeignKeyViolation(
            "a referenced row does not exist, or the row is still referenced", table=table, field=field
        )
    if kind == "SQLITE_CONSTRAINT_NOTNULL":
        return NotNullViolation(f"{field or 'a value'} is required", table=table, field=field)
    if kind == "SQLITE_CONSTRAINT_CHECK":
        return CheckViolation(f"invalid {field or 'value'}", table=table, field=field)
    return ConstraintViolation(f"constraint violated: {detail or exc}", table=table, field=field)


def _owning_table(conn: sqlite3.Connection | None, constraint: str) -> str | None:
    if conn is None:
        return None
    try:
        tables = _tables(conn)
    except sqlite3.Error:
        return None
    matches = [t for t in tables if constraint.startswith(t + "_")]
    return max(matches, key=len) if matches else None


class SqliteBackend:
    dialect: Dialect = "sqlite"

    def __init__(self, path: Path, busy_timeout: float) -> None:
        self.path, self.busy_timeout = path, busy_timeout
        self._thread: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None
        self._key_locks = FileKeyLocks(path.with_name(path.name + ".locks"))

    async def connect(self) -> None:
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        loop = asyncio.get_running_loop()
        try:
            self._key_locks.open()
            self._conn = await loop.run_in_executor(thread, _open, self.path, self.busy_timeout)
        except (sqlite3.Error, OSError) as exc:
            self._key_locks.close()
            thread.shutdown(wait=False)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise Unavailable(f"cannot open the SQLite database {self.path}: {reason}") from None
        self._thread = thread

    async def close(self) -> None:
        thread, conn = self._thread, self._conn
        self._thread = self._conn = None
        self._key_locks.close()
        if thread is None or conn is None:
            return
        async with self._lock:
            await asyncio.get_running_loop().run_in_executor(thread, conn.close)
        thread.shutdown(wait=True)

    async def ping(self) -> None:
        await self.fetchval("SELECT 1")

    async def _run(self, job: Callable[[sqlite3.Connection], T]) -> T:
        thread, conn = self._thread, self._conn
        if thread is None or conn is None:
            raise Unavailable(f"the SQLite database {self.path} is not open")

        def call() -> T | StoreError:
            try:
                return job(conn)
            except sqlite3.Error as exc:
                return _translate_error(conn, exc, str(self.path))

        result = await asyncio.get_running_loop().run_in_executor(thread, call)
        if isinstance(result, StoreError):
            raise result
        return result

    async def _locked(self, job: Callable[[sqlite3.Connection], T]) -> T:
        if self._owner is not None and self._owner is asyncio.current_task():
            raise QueryError("inside Database.transaction(), run statements on the connection it yields")
        async with self._lock:
            return await self._run(job)

    async def execute(self, sql: str, *args: Any) -> int:
        return await self._locked(_execute_job(sql, args))

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        await self._locked(_executemany_job(sql, args))

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return await self._locked(_fetch_job(sql, args))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else next(iter(row.values()))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        if self._owner is not None and self._owner is asyncio.current_task():
            raise QueryError("transactions do not nest; use the connection the outer one yields")
        async with self._lock:
            self._owner = asyncio.current_task()
            try:
                await self._run(lambda conn: conn.execute("BEGIN IMMEDIATE"))
                try:
                    yield SqliteTransaction(self)
                except BaseException:
                    await asyncio.shield(self._run(_rollback))
                    raise
                try:
                    await self._run(lambda conn: conn.execute("COMMIT"))
                except StoreError:
                    await asyncio.shield(self._run(_rollback))
                    raise
            finally:
                self._owner = None

    @asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        """Across every process on this machine using the file (``workers > 1``), through byte-range
        locks on ``<database>.locks`` beside it."""
        async with self._key_locks.hold(key):
            yield

    def leadership(self, name: str) -> Leadership:
        """One leader per job among every process on this machine using the file (``workers > 1``)."""
        return self._key_locks.leadership(name)


def _execute_job(sql: str, args: Sequence[Any]) -> Callable[[sqlite3.Connection], int]:
    return lambda conn: max(conn.execute(translate(sql), _params(args)).rowcount, 0)


def _executemany_job(sql: str, args: Iterable[Sequence[Any]]) -> Callable[[sqlite3.Connection], None]:
    params = [_params(row) for row in args]

    def job(conn: sqlite3.Connection) -> None:
        conn.executemany(translate(sql), params)

    return job


def _fetch_job(sql: str, args: Sequence[Any]) -> Callable[[sqlite3.Connection], list[Row]]:
    return lambda conn: _rows(conn.execute(translate(sql), _params(args)))


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


class SqliteTransaction:
    """The connection inside a SQLite transaction (the backend's lock is held by its owner)."""

    dialect: Dialect = "sqlite"

    def __init__(self, backend: SqliteBackend) -> None:
        self._backend = backend

    async def execute(self, sql: str, *args: Any) -> int:
        return await self._backend._run(_execute_job(sql, args))

    async def executemany(self, sql: str, args: Iterable[Sequence[Any]]) -> None:
        await self._backend._run(_executemany_job(sql, args))

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return await self._backend._run(_fetch_job(sql, args))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else next(iter(row.values()))

    async def xact_lock(self, key: str) -> None:
        """Nothing to do: ``BEGIN IMMEDIATE`` already made this the only writer."""

    async def execute_script(self, sql: str) -> None:
        statements = split_script(sql)

        def job(conn: sqlite3.Connection) -> None:
            for statement in statements:
                conn.execute(statement)

        await self._backend._run(job)
