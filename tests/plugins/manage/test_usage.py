"""Usage through Manage: tokens and cost per user, provider and model over a period, budget status,
the SVG chart and the CSV export. Rows are recorded through vkey's own usage writer."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

from plugins.manage.chart import bar_chart
from plugins.manage.usage import Budget, period_from
from plugins.vkey import USAGE_WRITER, KeyLimits, KeyService, UsageRow

from .kit import JSON, Cloud, cloud
from .test_users import call, token_for

NOW = datetime.now(UTC)


async def record(
    c: Cloud, user_id: uuid.UUID, provider: str, model: str, tokens: int, cost: float | None, at: datetime
) -> None:
    key = (await KeyService(c.db).keys_of(user_id))[-1]
    c.app[USAGE_WRITER].add(
        UsageRow(
            user_id=user_id,
            key_id=key.id,
            provider=provider,
            model=model,
            tokens_in=tokens,
            tokens_out=tokens // 2,
            cached_tokens=0,
            cache_write_tokens=0,
            reported=True,
            estimated=False,
            cost_usd=cost,
            status=200,
            latency_ms=5,
            created_at=at,
        )
    )


async def test_usage_per_user_provider_model_with_budget_and_csv(
    upstream: TestServer, db_url: str, tmp_path: Path
) -> None:
    async with cloud(upstream, db_url, tmp_path) as c:
        await c.user("ada@example.com", "admin")
        mia = await c.user("mia@example.com")
        bob = await c.user("bob@example.com")
        await KeyService(c.db).issue(mia.id, limits=KeyLimits(monthly_budget_usd=6.0))
        await KeyService(c.db).issue(bob.id)
        today = NOW - timedelta(minutes=5)
        await record(c, mia.id, "openai", "gpt-4o-mini", 1000, 0.5, today)
        await record(c, mia.id, "anthropic", "claude-sonnet-4", 2000, 4.5, today)
        await record(c, bob.id, "openai", "gpt-4o-mini", 100, None, today)
        await record(c, mia.id, "openai", "gpt-4o-mini", 9999, 99.0, NOW - timedelta(days=60))
        await c.app[USAGE_WRITER].flush()
        admin = await token_for(c, "ada@example.com")

        status, body = await call(c, admin, "GET", "/usage?period=7d&by=provider")
        assert status == 200
        users = {u["email"]: u for u in body["users"]}
        assert (users["mia@example.com"]["tokens_in"], users["mia@example.com"]["cost_usd"]) == (3000, 5.0)
        assert users["bob@example.com"]["unpriced_requests"] == 1
        assert users["ada@example.com"]["requests"] == 0
        lines = {(x["email"], x["provider"]): x["tokens_in"] for x in body["lines"]}
        assert lines == {
            ("mia@example.com", "openai"): 1000,
            ("mia@example.com", "anthropic"): 2000,
            ("bob@example.com", "openai"): 100,
        }
        status, body = await call(c, admin, "GET", "/usage?period=90d&by=model")
        assert {u["email"]: u["tokens_in"] for u in body["users"]}["mia@example.com"] == 12999
        old_day = (NOW - timedelta(days=60)).strftime("%Y-%m-%d")
        status, body = await call(c, admin, "GET", f"/usage?since={old_day}&until={old_day}&by=model")
        assert [(x["email"], x["model"], x["tokens_in"]) for x in body["lines"]] == [
            ("mia@example.com", "gpt-4o-mini", 9999)
        ]
        assert (await call(c, admin, "GET", "/usage?since=yesterday"))[0] == 400
        assert (await call(c, admin, "GET", "/usage?since=2026-02-02&until=2026-01-01"))[0] == 400
        assert (await call(c, admin, "GET", "/usage?by=colour"))[0] == 400
        status, body = await call(c, admin, "GET", "/usage")
        users = {u["email"]: u for u in body["users"]}
        assert (users["mia@example.com"]["budget_usd"], users["mia@example.com"]["budget_status"]) == (
            6.0,
            "near",
        )
        assert users["bob@example.com"]["budget_status"] == "no budget"

        async with await c.browser("ada@example.com") as browser:
            async with browser.get(c.at("/manage/usage?period=7d&by=model")) as response:
                assert response.status == 200
                page = await response.text()
            assert '<svg class="chart" role="img" aria-label="Cost per day (USD)"' in page
            assert "claude-sonnet-4" in page and "$5.00" not in page.split("<svg")[0]
            async with browser.get(c.at("/manage/usage.csv?period=7d&by=model")) as response:
                assert response.content_type == "text/csv"
                rows = list(csv.reader(io.StringIO(await response.text())))
        assert rows[0] == [
            "user",
            "model",
            "requests",
            "tokens_in",
            "tokens_out",
            "cost_usd",
            "unpriced_requests",
        ]
        assert sorted(r[:4] for r in rows[1:]) == [
            ["bob@example.com", "gpt-4o-mini", "1", "100"],
            ["mia@example.com", "claude-sonnet-4", "1", "2000"],
            ["mia@example.com", "gpt-4o-mini", "1", "1000"],
        ]
        async with aiohttp.ClientSession() as script:
            async with script.get(
                c.at("/manage/api/usage?format=csv"), headers={**admin, **JSON}
            ) as response:
                assert response.content_type == "text/csv"


def test_budget_status_thresholds() -> None:
    assert Budget(0, 12).status == "no budget"
    assert Budget(10, 7.9).status == "ok"
    assert Budget(10, 8).status == "near"
    assert Budget(10, 10).status == "over"


def test_period_presets_and_custom_dates() -> None:
    now = datetime(2026, 3, 15, 12, tzinfo=UTC)
    assert period_from({}, now).since == datetime(2026, 3, 1, tzinfo=UTC)
    assert period_from({"period": "7d"}, now).since == now - timedelta(days=7)
    custom = period_from({"since": "2026-03-01", "until": "2026-03-02"}, now)
    assert (custom.since, custom.until, custom.days) == (
        datetime(2026, 3, 1, tzinfo=UTC),
        datetime(2026, 3, 3, tzinfo=UTC),
        ["2026-03-01", "2026-03-02"],
    )


def test_chart_is_plain_escaped_svg() -> None:
    svg = str(bar_chart([("<b>", 3.0), ("x", 1.0)], title="T & U", unit="$"))
    assert svg.startswith('<svg class="chart" role="img" aria-label="T &amp; U"')
    assert "<b>" not in svg and "&lt;b&gt;: $3.00" in svg
    assert svg.count("<rect") == 2 and "<script" not in svg
