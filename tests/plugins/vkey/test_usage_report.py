"""``keys list`` (headers, last use, tokens and cost this month) and ``shmastra-cloud usage`` (by day,
provider or model; for one user; since a date; as JSON) through the real entry point, on SQLite and
Postgres: the day grouping is written per dialect."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from plugins.vkey import UsageReports
from plugins.vkey.reports import month_start
from proxy_core.cli import main
from proxy_core.db import Database, DatabaseConfig
from tests.db.backends import write_config

NOW = datetime.now(UTC)
THIS_MONTH = month_start(NOW)
LAST_MONTH = THIS_MONTH - timedelta(days=3)


def run(config: str, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main([*args, "-c", config]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def cells(output: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in output.splitlines() if line.strip()]


def add_usage(url: str, rows: list[tuple[object, ...]]) -> None:
    async def write() -> None:
        db = Database(DatabaseConfig(url=url))
        await db.connect()
        try:
            await db.executemany(
                "INSERT INTO usage (user_id, key_id, provider, model, tokens_in, tokens_out, cost_usd,"
                " status, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 200, $8)",
                rows,
            )
        finally:
            await db.close()

    asyncio.run(write())


def key_ids(url: str) -> dict[str, uuid.UUID]:
    async def read() -> dict[str, uuid.UUID]:
        db = Database(DatabaseConfig(url=url))
        await db.connect()
        try:
            rows = await db.fetch("SELECT u.email, k.id FROM virtual_keys k JOIN users u ON u.id = k.user_id")
            return {row["email"]: row["id"] for row in rows}
        finally:
            await db.close()

    return asyncio.run(read())


@pytest.fixture
def team(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, dict[str, uuid.UUID]]:
    """ada and bob with a key each; ada spent on two providers this month and more last month."""
    config = str(write_config(tmp_path / "proxy.toml", db_url))
    users = {}
    for email in ("ada@example.com", "bob@example.com"):
        users[email] = uuid.UUID(run(config, capsys, "users", "add", email).split()[-1])
        run(config, capsys, "keys", "issue", email)
    keys = key_ids(db_url)
    ada, bob = users["ada@example.com"], users["bob@example.com"]
    day1, day2 = THIS_MONTH + timedelta(hours=1), THIS_MONTH + timedelta(hours=1)
    if timedelta(days=1, hours=2) < NOW - THIS_MONTH:  # a second day exists this month
        day2 = THIS_MONTH + timedelta(days=1, hours=1)
    add_usage(
        db_url,
        [
            (ada, keys["ada@example.com"], "openai", "gpt-4o-mini", 1000, 500, 0.5, day1),
            (ada, keys["ada@example.com"], "openai", "gpt-4o-mini", 100, 50, 0.25, day2),
            (ada, keys["ada@example.com"], "anthropic", "claude-x", 10, 5, None, day2),  # no price
            (ada, keys["ada@example.com"], "openai", "gpt-4o", 9999, 9999, 99.0, LAST_MONTH),
            (bob, keys["bob@example.com"], "gemini", "gemini-2.5-pro", 7, 3, 0.01, day1),
        ],
    )
    return config, users


def test_keys_list_has_headers_last_use_and_this_months_spend(
    team: tuple[str, dict[str, uuid.UUID]], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = team
    header, *rows = cells(run(config, capsys, "keys", "list"))
    assert header == ["EMAIL", "KEY", "STATE", "EXPIRES", "LAST USED", "TOKENS (MONTH)", "COST USD (MONTH)"]
    by_email = {row[0]: row for row in rows}
    ada, bob = by_email["ada@example.com"], by_email["bob@example.com"]
    assert ada[5:] == ["1,665", "0.75"]  # last month's 99 USD is not this month's
    assert bob[5:] == ["10", "0.01"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", ada[4])


def test_usage_by_provider_model_and_day(
    team: tuple[str, dict[str, uuid.UUID]], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = team
    output = run(config, capsys, "usage")
    header, *rows = cells(output.split("\n\n")[0])
    assert header == ["PROVIDER", "USER", "REQUESTS", "TOKENS IN", "TOKENS OUT", "TOOL CALLS", "COST USD"]
    assert rows == [
        ["anthropic", "ada@example.com", "1", "10", "5", "0", "0.0000*"],
        ["gemini", "bob@example.com", "1", "7", "3", "0", "0.0100"],
        ["openai", "ada@example.com", "2", "1,100", "550", "0", "0.7500"],
    ]
    assert "total since" in output and "0.7600 USD" in output
    assert "without a price" in output

    output = run(config, capsys, "usage", "--by", "model", "--user", "ada@example.com")
    _, *rows = cells(output.split("\n\n")[0])
    assert [row[:3] for row in rows] == [
        ["claude-x", "ada@example.com", "1"],
        ["gpt-4o-mini", "ada@example.com", "2"],
    ]

    since = (THIS_MONTH - timedelta(days=10)).date().isoformat()
    lines = run(config, capsys, "usage", "--by", "day", "--since", since, "--json").splitlines()
    entries = [json.loads(line) for line in lines]
    days = {(entry["user"], entry["day"]): entry for entry in entries}
    assert days[("ada@example.com", LAST_MONTH.date().isoformat())]["cost_usd"] == 99.0
    assert sum(e["requests"] for e in entries if e["user"] == "ada@example.com") == 4
    assert {e["day"] for e in entries} <= {
        LAST_MONTH.date().isoformat(),
        THIS_MONTH.date().isoformat(),
        (THIS_MONTH + timedelta(days=1)).date().isoformat(),
    }


def test_usage_errors_are_readable(
    team: tuple[str, dict[str, uuid.UUID]], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = team
    assert main(["usage", "--user", "nobody@example.com", "-c", config]) == 1
    assert capsys.readouterr().err == "error: no user nobody@example.com\n"
    with pytest.raises(SystemExit):
        main(["usage", "--since", "last tuesday", "-c", config])
    assert "expected a date as YYYY-MM-DD" in capsys.readouterr().err


async def test_summary_until_leaves_out_later_usage(db_url: str) -> None:
    db = Database(DatabaseConfig(url=db_url))
    await db.connect()
    try:
        await db.migrate()
        user = uuid.uuid4()
        await db.execute("INSERT INTO users (id, email, role) VALUES ($1, 'u@example.com', 'member')", user)
        early, late = NOW - timedelta(days=3), NOW - timedelta(hours=1)
        await db.executemany(
            "INSERT INTO usage (user_id, provider, model, tokens_in, tokens_out, cost_usd, status, created_at)"
            " VALUES ($1, 'openai', 'gpt-4o', $2, 0, $3, 200, $4)",
            [(user, 10, 1.0, early), (user, 20, 2.0, late)],
        )
        reports = UsageReports(db)
        (all_of_it,) = await reports.summary(by="provider", since=NOW - timedelta(days=7))
        (before,) = await reports.summary(
            by="provider", since=NOW - timedelta(days=7), until=NOW - timedelta(days=1)
        )
        assert (all_of_it.tokens_in, all_of_it.cost_usd) == (30, 3.0)
        assert (before.tokens_in, before.cost_usd, before.requests) == (10, 1.0, 1)
    finally:
        await db.close()
