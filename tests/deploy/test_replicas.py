"""Three replicas on one Postgres behind nginx, each a real ``shmastra-cloud serve`` process, with
sandboxes at the E2B stand-in: a session made through one replica is valid on every one, a burst of
requests to a paused sandbox spread over all three makes exactly one resume, each gateway call is
counted once, one leader at a time pauses idle sandboxes and reconciles, and when it dies another
replica takes over; a template rollout is driven by one replica."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from proxy_core.db import lock_id
from tests.deploy.cluster import OPENAI_KEY, Cluster, fresh_database, running_cluster
from tests.plugins.auth.kit import browser, email_sign_in
from tests.standins.e2b import E2BStandin, running_e2b_standin
from tests.standins.llm_providers import STATE, WORDS, standin_app

TEMPLATE = Path(__file__).resolve().parents[1] / "plugins" / "sandbox_router" / "template"
JSON = {"Accept": "application/json"}


@pytest.fixture
async def database() -> AsyncIterator[str]:
    async with fresh_database() as url:
        yield url


@pytest.fixture
async def e2b(tmp_path: Path) -> AsyncIterator[E2BStandin]:
    template = tmp_path / "template"
    shutil.copytree(TEMPLATE, template)
    (template / ".python").write_text(sys.executable)
    (template / ".template-version").write_text("standin-1\n")
    async with running_e2b_standin(tmp_path / "e2b", templates={"shmastra": template}) as standin:
        yield standin


@pytest.fixture
async def llm(aiohttp_server: Any) -> TestServer:
    server: TestServer = await aiohttp_server(standin_app({"openai": OPENAI_KEY}))
    return server


class Front:
    """What the auth kit's sign-in helpers need of a proxy: here, nginx."""

    def __init__(self, url: str) -> None:
        self.url = url

    def at(self, path: str) -> URL:
        return URL(self.url + path)


async def sign_in(
    cluster: Cluster, email: str, sessions: list[aiohttp.ClientSession]
) -> aiohttp.ClientSession:
    session = browser()
    sessions.append(session)
    await email_sign_in(session, Front(cluster.url), cluster.mailbox, email)
    return session


async def until_running(cluster: Cluster, session: aiohttp.ClientSession) -> str:
    """Follow the progress events through nginx until the sandbox is ready; the final event's name."""
    async with session.get(cluster.at("/api/sandbox/events")) as answer:
        assert answer.status == 200
        event = ""
        async for raw in answer.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif not line and event in ("ready", "failed"):
                return event
    raise AssertionError("the event stream ended without ready or failed")


async def states(cluster: Cluster, email: str) -> list[str]:
    rows = await cluster.query(
        "SELECT e.state FROM sandbox_events e JOIN users u ON u.id = e.user_id"
        " WHERE lower(u.email) = $1 ORDER BY e.id",
        email,
    )
    return [row["state"] for row in rows]


async def until(condition: Any, what: str, tries: int = 600) -> None:
    for _ in range(tries):
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


async def leader_locks(cluster: Cluster, job: str) -> int:
    """How many sessions hold the leader's advisory lock of ``job`` right now."""
    key = lock_id(job)
    rows = await cluster.query(
        "SELECT count(*) AS held FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
        " WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()"
        " AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = 1",
        (key >> 32) & 0xFFFFFFFF,
        key & 0xFFFFFFFF,
    )
    return int(rows[0]["held"])


def rollout_template(tmp_path: Path, version: str) -> Path:
    """The template Manage rolls out: the stand-in's at ``version``, with a changed project file."""
    target = tmp_path / "rollout-template"
    shutil.copytree(TEMPLATE, target)
    (target / "VERSION").write_text(f"{version}\n")
    (target / "shmastra" / "package.json").write_text(f'{{"name": "app", "version": "{version}"}}\n')
    return target


async def manage_api(cluster: Cluster, email: str) -> Any:
    """``call(method, path, body)`` on ``/manage/api`` through nginx, with an admin token of ``email``
    (made an admin by the CLI, as an operator would)."""
    promoted = await cluster.command("users", "set-role", email, "admin")
    assert promoted.returncode == 0, promoted.stderr
    created = await cluster.command("admin-token", "create", email)
    assert created.returncode == 0, created.stderr
    headers = {"Authorization": f"Bearer {created.stdout.strip()}", **JSON}

    async def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as script:
            async with script.request(
                method, cluster.at(f"/manage/api{path}"), json=body, headers=headers
            ) as answer:
                return answer.status, await answer.json()

    return call


def updaters(cluster: Cluster) -> dict[int, list[str]]:
    """Replica index -> the users whose sandbox it started updating (from its log), in order."""
    found: dict[int, list[str]] = {}
    for replica in cluster.replicas:
        for message in replica.logged("manage: updating the sandbox of "):
            found.setdefault(replica.index, []).append(message.split()[5])
    return found


async def test_sessions_single_flight_resume_and_usage_across_three_replicas(
    tmp_path: Path, database: str, e2b: E2BStandin, llm: TestServer
) -> None:
    sessions: list[aiohttp.ClientSession] = []
    llm_url = str(llm.make_url("")).rstrip("/")
    # The leader's sweeps are off here (the next test's subject): this one counts only the state changes
    # that requests and the operator's pause make.
    async with running_cluster(tmp_path, database, e2b.env, llm_url) as cluster:
        try:
            ada = await sign_in(cluster, "ada@example.com", sessions)

            # The session made through nginx is good on every replica, asked directly.
            for replica in cluster.replicas:
                async with ada.get(replica.url + "/api/sandbox/status", headers=JSON) as answer:
                    assert answer.status == 200, (replica.index, await answer.text())
            async with aiohttp.ClientSession() as stranger:
                async with stranger.get(
                    cluster.replicas[1].url + "/api/sandbox/status", headers=JSON
                ) as answer:
                    assert answer.status == 401

            assert await until_running(cluster, ada) == "ready"
            paused = await cluster.command("sandboxes", "pause", "ada@example.com")
            assert paused.returncode == 0, paused.stderr
            assert await states(cluster, "ada@example.com") == ["provisioning", "running", "paused"]

            # 300 requests at once through nginx (round-robin over the three): one resume among them.
            cookies = {m.key: m.value for m in ada.cookie_jar}
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), cookies=cookies
            ) as burst:

                async def one(index: int) -> int:
                    async with burst.get(cluster.at(f"/api/mastra/agents?n={index}"), headers=JSON) as answer:
                        await answer.read()
                        return answer.status

                statuses = await asyncio.gather(*(one(i) for i in range(300)))
            assert set(statuses) <= {200, 503}, sorted(set(statuses))
            assert 503 in statuses
            assert await until_running(cluster, ada) == "ready"
            for replica in cluster.replicas:
                async with ada.get(replica.url + "/api/mastra/agents", headers=JSON) as answer:
                    assert answer.status == 200, replica.index
            assert await states(cluster, "ada@example.com") == [
                "provisioning",
                "running",
                "paused",
                "resuming",
                "running",
            ]
            assert len(e2b.recorded("create")) == 1
            assert len(e2b.sandboxes) == 1

            # Gateway calls with the key the sandbox was given, spread over the replicas.
            env = e2b.recorded("create")[0].body["envVars"]
            key = env["OPENAI_API_KEY"]
            assert key.startswith("vk_") and env["SHMASTRA_VIRTUAL_KEY"] == key
            before = len(llm.app[STATE].received)
            async with aiohttp.ClientSession() as sdk:
                for n in range(9):
                    async with sdk.post(
                        cluster.at("/api/gateway/openai/v1/chat/completions"),
                        headers={"Authorization": f"Bearer {key}"},
                        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"hi {n}"}]},
                    ) as answer:
                        assert answer.status == 200, await answer.text()
            assert len(llm.app[STATE].received) - before == 9

            async def usage_rows() -> list[dict[str, Any]]:
                report = await cluster.command(
                    "usage", "--user", "ada@example.com", "--by", "model", "--json"
                )
                assert report.returncode == 0, report.stderr
                return [orjson.loads(line) for line in report.stdout.splitlines() if line.strip()]

            async def nine_counted() -> bool:
                rows = await cluster.query("SELECT count(*) AS n FROM usage")
                return int(rows[0]["n"]) >= 9

            await until(nine_counted, "nine usage rows")
            for replica in cluster.replicas:  # every replica's batch has been written by now
                assert replica.process.poll() is None
            await asyncio.sleep(0.5)  # a few flush intervals: a double count would show up
            rows = await cluster.query("SELECT count(*) AS n, sum(tokens_out) AS output FROM usage")
            assert int(rows[0]["n"]) == 9
            assert int(rows[0]["output"]) == 9 * len(WORDS)
            report = await usage_rows()
            assert sum(int(row["requests"]) for row in report) == 9, report
        finally:
            for session in sessions:
                await session.close()
            await e2b.close()


def pausers(cluster: Cluster) -> dict[int, int]:
    """Replica index -> how many idle pauses it logged."""
    counts = {r.index: len(r.logged("sandbox_router: paused the sandbox of")) for r in cluster.replicas}
    return {index: count for index, count in counts.items() if count}


async def test_one_leader_pauses_idle_sandboxes_and_reconciles_and_another_takes_over_when_it_dies(
    tmp_path: Path, database: str, e2b: E2BStandin, llm: TestServer
) -> None:
    sessions: list[aiohttp.ClientSession] = []
    llm_url = str(llm.make_url("")).rstrip("/")
    async with running_cluster(
        tmp_path, database, e2b.env, llm_url, idle_timeout=1, sweep_interval=0.3
    ) as cluster:
        try:
            people = ["ada@example.com", "bob@example.com", "cy@example.com"]
            browsers = {email: await sign_in(cluster, email, sessions) for email in people}
            for email in people:
                assert await until_running(cluster, browsers[email]) == "ready"

            async def all_paused() -> bool:
                latest = [(await states(cluster, email))[-1:] for email in people]
                return all(last == ["paused"] for last in latest)

            await until(all_paused, "every idle sandbox paused")
            for email in people:
                assert await states(cluster, email) == ["provisioning", "running", "paused"]
            (leader,) = pausers(cluster)  # one replica did every pause
            assert pausers(cluster)[leader] == 3
            assert await leader_locks(cluster, "sandbox_router.sweeper") == 1

            cluster.replicas[leader].kill()

            # ada comes back through nginx (which skips the dead replica); her sandbox resumes, and once
            # idle again it is paused by the replica that took the lead.
            assert await until_running(cluster, browsers["ada@example.com"]) == "ready"

            async def ada_paused_again() -> bool:
                return (await states(cluster, "ada@example.com"))[-1:] == ["paused"]

            await until(ada_paused_again, "ada's sandbox paused by the new leader")
            assert await states(cluster, "ada@example.com") == [
                "provisioning",
                "running",
                "paused",
                "resuming",
                "running",
                "paused",
            ]
            after = pausers(cluster)
            assert after.pop(leader) == 3
            (successor,) = after
            assert successor != leader and after[successor] == 1
            assert await leader_locks(cluster, "sandbox_router.sweeper") == 1

            # The new leader also reconciles: bob's sandbox removed at E2B behind the cloud's back.
            rows = await cluster.query(
                "SELECT s.provider_sandbox_id FROM sandboxes s JOIN users u ON u.id = s.user_id"
                " WHERE u.email = 'bob@example.com'"
            )
            sandbox_id = rows[0]["provider_sandbox_id"]
            async with aiohttp.ClientSession() as admin:
                async with admin.delete(
                    f"{e2b.url}/sandboxes/{sandbox_id}", headers={"X-API-KEY": e2b.api_key}
                ) as answer:
                    assert answer.status == 204

            async def bob_reconciled() -> bool:
                found = await cluster.query(
                    "SELECT s.provider_sandbox_id FROM sandboxes s JOIN users u ON u.id = s.user_id"
                    " WHERE u.email = 'bob@example.com'"
                )
                return found[0]["provider_sandbox_id"] is None

            await until(bob_reconciled, "bob's removed sandbox forgotten by the leader")
            reasons = await cluster.query(
                "SELECT e.reason FROM sandbox_events e JOIN users u ON u.id = e.user_id"
                " WHERE u.email = 'bob@example.com' ORDER BY e.id"
            )
            assert [r["reason"] for r in reasons].count(
                "removed at the provider; a new one is made on the next visit"
            ) == 1
            # and bob's next visit makes him a new one
            assert await until_running(cluster, browsers["bob@example.com"]) == "ready"
            assert len(e2b.recorded("create")) == 4
        finally:
            for session in sessions:
                await session.close()
            await e2b.close()


async def test_a_rollout_is_driven_by_one_replica(
    tmp_path: Path, database: str, e2b: E2BStandin, llm: TestServer
) -> None:
    sessions: list[aiohttp.ClientSession] = []
    llm_url = str(llm.make_url("")).rstrip("/")
    template = rollout_template(tmp_path, "standin-2")
    async with running_cluster(tmp_path, database, e2b.env, llm_url, template_dir=template) as cluster:
        try:
            people = ["ada@example.com", "bob@example.com", "cy@example.com"]
            for email in people:
                assert await until_running(cluster, await sign_in(cluster, email, sessions)) == "ready"
            api = await manage_api(cluster, "ada@example.com")
            status, body = await api("GET", "/updates")
            assert (body["available_version"], body["outdated"]) == ("standin-2", 3)

            # started through nginx (any replica answers); asked about through every replica
            status, body = await api("POST", "/rollouts", {"concurrency": 2})
            assert status == 201, body
            rollout_id = body["id"]
            found: dict[str, Any] = {}

            async def done() -> bool:
                _, answer = await api("GET", f"/rollouts/{rollout_id}")
                found.update(answer)
                return bool(answer["state"] == "done")

            await until(done, "the rollout done", tries=1200)
            assert {s["email"]: s["state"] for s in found["sandboxes"]} == dict.fromkeys(people, "updated")
            (driver,) = updaters(cluster)  # one replica drove every update, each once
            assert len(updaters(cluster)[driver]) == 3 == len(set(updaters(cluster)[driver]))
            assert await leader_locks(cluster, "manage.rollouts") == 1
            rows = await cluster.query("SELECT template_version FROM sandboxes")
            assert [r["template_version"] for r in rows] == ["standin-2"] * 3
            for sandbox in e2b.sandboxes.values():
                assert (sandbox.home / "installs").read_text().split() == ["start", "done"]
        finally:
            for session in sessions:
                await session.close()
            await e2b.close()
