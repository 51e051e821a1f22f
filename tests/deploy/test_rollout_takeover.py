"""A template rollout outlives the replica driving it: two ``shmastra-cloud serve`` processes on one
Postgres behind nginx, sandboxes at the E2B stand-in, a rollout over four sandboxes one at a time,
and the replica driving it killed with SIGKILL in the middle of an update. The other replica takes
the lead, runs the interrupted update again from its backup and finishes the rest; every sandbox ends
on the new version, none is updated twice, and the rollout's report says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from tests.deploy.cluster import Cluster, running_cluster
from tests.deploy.test_replicas import (
    TEMPLATE,
    database,
    e2b,
    llm,
    manage_api,
    rollout_template,
    sign_in,
    until,
    until_running,
    updaters,
)
from tests.standins.e2b import E2BStandin

__all__ = ["database", "e2b", "llm"]

PEOPLE = ["ada@example.com", "bob@example.com", "cy@example.com", "dee@example.com"]


async def sandbox_homes(cluster: Cluster, e2b: E2BStandin) -> dict[str, Path]:
    rows = await cluster.query(
        "SELECT u.email, s.provider_sandbox_id FROM sandboxes s JOIN users u ON u.id = s.user_id"
    )
    return {row["email"]: e2b.sandboxes[row["provider_sandbox_id"]].home for row in rows}


async def test_a_rollout_is_finished_by_another_replica_when_its_driver_is_killed(
    tmp_path: Path, database: str, e2b: E2BStandin, llm: TestServer
) -> None:
    assert TEMPLATE.is_dir()
    sessions: list[aiohttp.ClientSession] = []
    llm_url = str(llm.make_url("")).rstrip("/")
    template = rollout_template(tmp_path, "standin-2")
    async with running_cluster(
        tmp_path, database, e2b.env, llm_url, replicas=2, template_dir=template
    ) as cluster:
        try:
            for email in PEOPLE:
                assert await until_running(cluster, await sign_in(cluster, email, sessions)) == "ready"
            homes = await sandbox_homes(cluster, e2b)
            for home in homes.values():
                (home / "SLOW_UPDATE").write_text("1.5")
            api = await manage_api(cluster, "ada@example.com")

            status, body = await api("POST", "/rollouts", {"concurrency": 1})
            assert status == 201 and body["sandboxes"] == 4, body
            rollout_id = body["id"]

            # the second sandbox is being installed: the driver has updated one and is inside another
            seen: dict[str, Any] = {}

            async def second_installing() -> bool:
                _, found = await api("GET", f"/rollouts/{rollout_id}")
                seen.update(found)
                states = [s["state"] for s in found["sandboxes"]]
                installing = [s for s in found["sandboxes"] if s["step"] == "install"]
                return states.count("updated") == 1 and len(installing) == 1

            await until(second_installing, "the rollout in the middle of its second sandbox")
            (interrupted,) = [s["email"] for s in seen["sandboxes"] if s["step"] == "install"]
            (first,) = [s["email"] for s in seen["sandboxes"] if s["state"] == "updated"]
            installs = homes[interrupted] / "installs"

            async def install_running() -> bool:  # its install command itself has begun
                return installs.exists() and installs.read_text().split() == ["start"]

            await until(install_running, "the interrupted sandbox's install running")
            (driver,) = updaters(cluster)
            cluster.replicas[driver].kill()

            async def finished() -> bool:
                _, found = await api("GET", f"/rollouts/{rollout_id}")
                seen.update(found)
                return bool(found["state"] == "done")

            await until(finished, "the rollout finished by the other replica", tries=1200)
            assert {s["email"]: s["state"] for s in seen["sandboxes"]} == dict.fromkeys(PEOPLE, "updated")
            assert {s["message"] for s in seen["sandboxes"]} == {"Updated to standin-2."}
            assert all(s["previous_version"] == "standin-1" for s in seen["sandboxes"])

            # who drove what: the killed replica the first and the interrupted one, the survivor the
            # interrupted one again and the rest
            survivor = 1 - driver
            by_replica = updaters(cluster)
            assert sorted(by_replica) == [0, 1]
            emails = {
                str(row["id"]): row["email"] for row in await cluster.query("SELECT id, email FROM users")
            }
            assert sorted(emails[u] for u in by_replica[driver]) == sorted([first, interrupted])
            assert sorted(emails[u] for u in by_replica[survivor]) == sorted(
                [interrupted, *(e for e in PEOPLE if e not in (first, interrupted))]
            )

            # every sandbox on the new version, whole: files, version file, store, app answering
            for email, home in homes.items():
                assert (home / ".template-version").read_text().strip() == "standin-2", email
                assert '"version": "standin-2"' in (home / "shmastra" / "package.json").read_text(), email
                installs = (home / "installs").read_text().split()
                # one install each; the interrupted one's was started again from the pristine backup
                assert installs.count("start") == (2 if email == interrupted else 1), (email, installs)
                assert installs[-1] == "done", (email, installs)
                assert (home / ".rollback" / "shmastra" / "package.json").read_text() == (
                    TEMPLATE / "shmastra" / "package.json"
                ).read_text()
            rows = await cluster.query(
                "SELECT u.email, s.state, s.template_version FROM sandboxes s JOIN users u ON u.id = s.user_id"
            )
            assert {(r["email"], r["state"], r["template_version"]) for r in rows} == {
                (email, "running", "standin-2") for email in PEOPLE
            }
            for session in sessions:
                async with session.get(cluster.at("/api/mastra/agents")) as answer:
                    assert answer.status == 200

            # the report: one entry per sandbox and one for the whole, written once
            audit = await cluster.query(
                "SELECT action, target_user_id, detail FROM audit_log WHERE action LIKE 'rollout.%' ORDER BY id"
            )
            assert [a["action"] for a in audit].count("rollout.start") == 1
            per_sandbox = [a for a in audit if a["action"] == "rollout.sandbox"]
            assert sorted(emails[str(a["target_user_id"])] for a in per_sandbox) == sorted(PEOPLE)
            done = [a for a in audit if a["action"] == "rollout.done"]
            assert len(done) == 1 and '"updated": 4' in done[0]["detail"]
        finally:
            for session in sessions:
                await session.close()
            await e2b.close()
