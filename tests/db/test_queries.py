"""The query interface behaves the same on SQLite and Postgres: types, errors, transactions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from proxy_core.db import (
    CheckViolation,
    Database,
    ForeignKeyViolation,
    NotNullViolation,
    QueryError,
    UniqueViolation,
)


async def add_user(db: Database, email: str) -> uuid.UUID:
    user_id = uuid.uuid4()
    await db.execute("INSERT INTO users (id, email) VALUES ($1, $2)", user_id, email)
    return user_id


async def test_types_round_trip_identically(db: Database) -> None:
    user_id = await add_user(db, "types@example.com")
    at = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
    await db.execute(
        "INSERT INTO sessions (id, user_id, expires_at, idle_expires_at, data) VALUES ($1, $2, $3, $4, $5)",
        "s1",
        user_id,
        at,
        datetime(2024, 5, 6, 12, 0),  # naive: taken as UTC on both backends
        {"token": "t", "scopes": ["a", "b"], "n": 1},
    )
    row = await db.fetchrow(
        "SELECT s.id, s.user_id, s.expires_at, s.idle_expires_at, s.revoked_at, s.data, s.created_at,"
        " u.disabled, u.role FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1",
        "s1",
    )
    assert row is not None
    assert row["user_id"] == user_id and type(row["user_id"]) is uuid.UUID
    assert row["expires_at"] == at and row["expires_at"].tzinfo == UTC
    assert row["idle_expires_at"] == datetime(2024, 5, 6, 12, 0, tzinfo=UTC)
    assert row["revoked_at"] is None
    assert row["data"] == {"token": "t", "scopes": ["a", "b"], "n": 1}
    assert row["disabled"] is False and row["role"] == "member"
    assert abs(row["created_at"] - datetime.now(UTC)) < timedelta(seconds=10)


async def test_timestamps_compare_in_sql_on_both(db: Database) -> None:
    user_id = await add_user(db, "cmp@example.com")
    now = datetime.now(UTC)
    for name, delta in (("past", -60), ("future", 60)):
        at = now + timedelta(seconds=delta)
        await db.execute(
            "INSERT INTO sessions (id, user_id, expires_at, idle_expires_at) VALUES ($1, $2, $3, $3)",
            name,
            user_id,
            at,
        )
    live = await db.fetch("SELECT id FROM sessions WHERE expires_at > now() ORDER BY id")
    assert [row["id"] for row in live] == ["future"]
    later = await db.fetch("SELECT id FROM sessions WHERE expires_at > $1", now)
    assert [row["id"] for row in later] == ["future"]


async def test_counts_and_fetch_shapes(db: Database) -> None:
    await db.executemany(
        "INSERT INTO users (id, email, disabled) VALUES ($1, $2, $3)",
        [(uuid.uuid4(), f"u{i}@example.com", i % 2 == 0) for i in range(5)],
    )
    assert await db.execute("UPDATE users SET name = $1 WHERE disabled = $2", "x", True) == 3
    assert await db.fetchval("SELECT count(*) FROM users WHERE name = 'x'") == 3
    assert await db.fetchrow("SELECT id FROM users WHERE email = $1", "nobody") is None
    assert await db.fetchval("SELECT id FROM users WHERE email = $1", "nobody") is None
    rows = await db.fetch("SELECT email, disabled FROM users ORDER BY email")
    assert rows[0] == {"email": "u0@example.com", "disabled": True}
    # '$1' inside a literal is text, not a placeholder
    assert await db.fetchval("SELECT '$1 costs' || $1", "!") == "$1 costs!"


async def test_unique_email_is_case_insensitive(db: Database) -> None:
    await add_user(db, "Ann@Example.com")
    with pytest.raises(UniqueViolation) as caught:
        await add_user(db, "ann@example.COM")
    assert caught.value.message == "email already exists"
    assert caught.value.table == "users" and caught.value.field == "email"


async def test_unique_column_constraint_names_the_field(db: Database) -> None:
    await db.execute("INSERT INTO users (id, email, external_id) VALUES ($1, 'a@x.io', 'ext')", uuid.uuid4())
    with pytest.raises(UniqueViolation, match=r"^external_id already exists$"):
        await db.execute(
            "INSERT INTO users (id, email, external_id) VALUES ($1, 'b@x.io', 'ext')", uuid.uuid4()
        )


async def test_check_not_null_and_foreign_key_violations(db: Database) -> None:
    with pytest.raises(CheckViolation, match=r"^invalid role$"):
        await db.execute("INSERT INTO users (id, email, role) VALUES ($1, 'c@x.io', 'owner')", uuid.uuid4())
    with pytest.raises(NotNullViolation, match=r"^email is required$"):
        await db.execute("INSERT INTO users (id, email) VALUES ($1, NULL)", uuid.uuid4())
    with pytest.raises(ForeignKeyViolation):
        await db.execute(
            "INSERT INTO sandboxes (id, user_id, provider) VALUES ($1, $2, 'e2b')", uuid.uuid4(), uuid.uuid4()
        )


async def test_deleting_a_user_cascades(db: Database) -> None:
    user_id = await add_user(db, "gone@example.com")
    await db.execute(
        "INSERT INTO sandboxes (id, user_id, provider) VALUES ($1, $2, 'e2b')", uuid.uuid4(), user_id
    )
    await db.execute(
        "INSERT INTO sessions (id, user_id, expires_at, idle_expires_at) VALUES ('s', $1, now(), now())",
        user_id,
    )
    await db.execute(
        "INSERT INTO virtual_keys (id, user_id, key_hash, prefix) VALUES ($1, $2, 'h', 'vk_')",
        uuid.uuid4(),
        user_id,
    )
    assert await db.execute("DELETE FROM users WHERE id = $1", user_id) == 1
    for table in ("sandboxes", "sessions", "virtual_keys"):
        assert await db.fetchval(f"SELECT count(*) FROM {table}") == 0


async def test_transaction_commits_together(db: Database) -> None:
    async with db.transaction() as tx:
        user_id = uuid.uuid4()
        await tx.execute("INSERT INTO users (id, email) VALUES ($1, 't@x.io')", user_id)
        await tx.execute(
            "INSERT INTO sandboxes (id, user_id, provider) VALUES ($1, $2, 'e2b')", uuid.uuid4(), user_id
        )
        assert await tx.fetchval("SELECT count(*) FROM sandboxes") == 1
    assert await db.fetchval("SELECT count(*) FROM sandboxes") == 1


async def test_a_failing_transaction_leaves_nothing_half_written(db: Database) -> None:
    await add_user(db, "taken@example.com")
    with pytest.raises(UniqueViolation):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO users (id, email) VALUES ($1, 'first@x.io')", uuid.uuid4())
            await tx.execute("INSERT INTO users (id, email) VALUES ($1, 'TAKEN@example.com')", uuid.uuid4())
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO users (id, email) VALUES ($1, 'second@x.io')", uuid.uuid4())
            raise RuntimeError("the caller changed its mind")
    assert await db.fetchval("SELECT count(*) FROM users") == 1
    # the database is still usable afterwards
    await add_user(db, "after@example.com")


async def test_sql_errors_are_query_errors(db: Database) -> None:
    with pytest.raises(QueryError, match="database error"):
        await db.fetch("SELECT * FROM no_such_table")


async def test_a_script_with_several_statements_on_one_line_runs_them_all(db: Database) -> None:
    async with db.transaction() as tx:
        await tx.execute_script(
            "CREATE TABLE script_test (id integer PRIMARY KEY, note text); "
            "INSERT INTO script_test (id, note) VALUES (1, 'a;b'); INSERT INTO script_test (id) VALUES (2)"
        )
    assert await db.fetch("SELECT id, note FROM script_test ORDER BY id") == [
        {"id": 1, "note": "a;b"},
        {"id": 2, "note": None},
    ]
