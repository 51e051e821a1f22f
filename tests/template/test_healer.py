"""The healer against a real small app under real pm2 (started by the template's own ``start.sh``),
reporting to a recording cloud and repairing through a scripted OpenAI-compatible model."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession

from plugins.sandbox_router.template import PreparedTemplate
from tests.standins.scripted_llm import MODEL, ScriptedModel, scripted_llm_app, tool_call

from .conftest import VIRTUAL_KEY, CloudReports, StartSandbox, wait_for

FAST = {  # short enough for tests, long enough for a loaded machine to start a small Node app
    "HEALER_INTERVAL": "0.5",
    "HEALER_STARTUP_GRACE": "10",
    "HEALER_RESTART_WAIT": "10",
    "HEALER_STABLE_SECONDS": "30",
}
BROKEN_GREETING = "module.exports = 'hello' +;\n"
FIXED_GREETING = "module.exports = 'hello again';\n"


def sandbox_env(cloud: CloudReports, llm_url: str = "http://127.0.0.1:9/v1") -> dict[str, str]:
    return {
        **FAST,
        "SHMASTRA_CLOUD_URL": cloud.url,
        "SHMASTRA_VIRTUAL_KEY": VIRTUAL_KEY,
        "OPENAI_API_KEY": VIRTUAL_KEY,
        "OPENAI_BASE_URL": llm_url,
    }


def plant_bug(project: Path) -> None:
    (project / "greeting.js").write_text(BROKEN_GREETING)


def reported(cloud: CloudReports, status: str, after: int = 0) -> bool:
    return status in cloud.statuses()[after:]


async def test_a_crash_is_healed_by_a_restart(
    healer_prepared: PreparedTemplate, start_sandbox: StartSandbox, cloud: CloudReports
) -> None:
    sandbox = await start_sandbox(healer_prepared, sandbox_env(cloud))
    await wait_for(lambda: reported(cloud, "ready"), "the healer reports the app ready")
    before = json.loads(await sandbox.pm2("jlist"))
    first_pid = next(entry["pid"] for entry in before if entry["name"] == "shmastra")
    seen = len(cloud.reports)

    async with ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{sandbox.port}/crash") as response:
            assert response.status == 200
    await wait_for(lambda: reported(cloud, "ready", seen), "ready again after the crash")

    assert cloud.statuses()[seen:] == ["healing", "ready"]
    assert "crashed" in cloud.reports[seen]["message"]
    assert cloud.reports[-1]["message"].startswith("restarted after")
    async with ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{sandbox.port}/health") as response:
            assert response.status == 200
    after = json.loads(await sandbox.pm2("jlist"))
    assert next(entry["pid"] for entry in after if entry["name"] == "shmastra") != first_pid
    assert set(cloud.authorizations) == {f"Bearer {VIRTUAL_KEY}"}
    assert VIRTUAL_KEY not in sandbox.healer_log()


async def test_a_report_the_cloud_did_not_take_is_sent_again(
    healer_prepared: PreparedTemplate, start_sandbox: StartSandbox, cloud: CloudReports
) -> None:
    cloud.refuse = 2
    sandbox = await start_sandbox(healer_prepared, sandbox_env(cloud))
    await wait_for(lambda: reported(cloud, "ready"), "the ready report gets through")
    assert cloud.refuse == 0 and cloud.statuses() == ["ready"]
    await wait_for(
        lambda: sandbox.healer_log().count("the cloud refused the report: HTTP 503") == 2,
        "the healer logs both refusals",
    )


@pytest.mark.parametrize(
    ("path", "settings", "symptom"),
    [
        ("/spin", {"HEALER_CPU_PERCENT": "30", "HEALER_CPU_CHECKS": "3"}, "% CPU for 3 checks in a row"),
        ("/grow", {"HEALER_MEMORY_LIMIT_MB": "200"}, "of the memory limit"),
    ],
)
async def test_cpu_or_memory_exhaustion_is_healed_by_a_restart(
    path: str,
    settings: dict[str, str],
    symptom: str,
    healer_prepared: PreparedTemplate,
    start_sandbox: StartSandbox,
    cloud: CloudReports,
) -> None:
    sandbox = await start_sandbox(healer_prepared, {**sandbox_env(cloud), **settings})
    await wait_for(lambda: reported(cloud, "ready"), "the healer reports the app ready")
    seen = len(cloud.reports)

    async with ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{sandbox.port}{path}") as response:
            assert response.status == 200
    await wait_for(lambda: reported(cloud, "ready", seen), "ready again after a restart")

    assert cloud.statuses()[seen:] == ["healing", "ready"]
    assert symptom in cloud.reports[seen]["message"]


def unhanging_script(conversation: int, turn: int) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [
        {"tool_calls": [tool_call("c0", "run_command", command="ls; rm HANG", timeout_seconds=10)]},
        {"tool_calls": [tool_call("c1", "finish", summary="removed the HANG file that stalled the build")]},
    ]
    return steps[min(turn, len(steps) - 1)]


async def test_a_stuck_build_is_detected_and_repaired_with_a_command(
    aiohttp_server: Any, healer_prepared: PreparedTemplate, start_sandbox: StartSandbox, cloud: CloudReports
) -> None:
    llm = await aiohttp_server(scripted_llm_app(unhanging_script))
    model: ScriptedModel = llm.app[MODEL]
    sandbox = await start_sandbox(
        healer_prepared,
        {
            **sandbox_env(cloud, str(llm.make_url("/v1"))),
            "HEALER_BUILD_STUCK_SECONDS": "1.5",
        },
        plant=lambda project: (project / "HANG").write_text("stall\n"),
    )
    await wait_for(lambda: reported(cloud, "ready"), "ready after the model's command", limit=120)

    assert "the dev build has been stuck for" in cloud.reports[0]["message"]
    assert (
        cloud.reports[-1]["message"] == "repaired on attempt 1: removed the HANG file that stalled the build"
    )
    output = tool_results(model.requests[1])["c0"]
    assert output.startswith("exit code 0") and "HANG" in output and "server.js" in output
    assert not (sandbox.project / "HANG").exists()
    log = subprocess.run(
        ["git", "log", "--format=%s", "--name-status", "-1"],
        cwd=sandbox.project,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert log.startswith("healer: attempt 1: removed the HANG file") and "D\tHANG" in log


async def test_start_sh_runs_once_and_pm2_sh_needs_it_running(
    healer_prepared: PreparedTemplate, start_sandbox: StartSandbox, cloud: CloudReports
) -> None:
    sandbox = await start_sandbox(healer_prepared, sandbox_env(cloud))
    await wait_for(lambda: reported(cloud, "ready"), "the healer reports the app ready")

    again = subprocess.run(
        ["bash", str(sandbox.home / "start.sh")], env=sandbox.env, capture_output=True, text=True, check=False
    )
    assert again.returncode == 1 and "this sandbox already runs" in again.stderr
    assert json.loads(await sandbox.pm2("jlist"))  # the first one is untouched

    await sandbox.stop()
    refused = subprocess.run(
        [str(sandbox.home / "pm2.sh"), "jlist"], env=sandbox.env, capture_output=True, text=True, check=False
    )
    assert refused.returncode == 3 and "this sandbox is not running" in refused.stderr
    assert not (sandbox.home / ".pm2" / "pm2.pid").exists()  # pm2 spawned no daemon of its own


def fixing_script(conversation: int, turn: int) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [
        {
            "tool_calls": [
                tool_call("c0", "write_file", path="../escape.txt", content="x"),
                tool_call("c1", "list_files"),
            ]
        },
        {"tool_calls": [tool_call("c2", "read_file", path="greeting.js")]},
        {"tool_calls": [tool_call("c3", "write_file", path="greeting.js", content=FIXED_GREETING)]},
        {"tool_calls": [tool_call("c4", "restart_app"), tool_call("c5", "wait", seconds=1)]},
        {"tool_calls": [tool_call("c6", "finish", summary="fixed a syntax error in greeting.js")]},
    ]
    return steps[min(turn, len(steps) - 1)]


def tool_results(request: dict[str, Any]) -> dict[str, str]:
    return {m["tool_call_id"]: m["content"] for m in request["messages"] if m["role"] == "tool"}


async def test_persistent_breakage_is_repaired_by_the_model_and_committed(
    aiohttp_server: Any, healer_prepared: PreparedTemplate, start_sandbox: StartSandbox, cloud: CloudReports
) -> None:
    llm = await aiohttp_server(scripted_llm_app(fixing_script))
    model: ScriptedModel = llm.app[MODEL]
    sandbox = await start_sandbox(
        healer_prepared, sandbox_env(cloud, str(llm.make_url("/v1"))), plant=plant_bug
    )
    await wait_for(lambda: reported(cloud, "ready"), "the model's fix makes the app ready", limit=120)

    statuses = cloud.statuses()
    assert statuses[0] == "healing" and statuses[-1] == "ready"
    assert any("repair attempt 1 of 3" in r["message"] for r in cloud.reports)
    assert cloud.reports[-1]["message"] == "repaired on attempt 1: fixed a syntax error in greeting.js"
    assert model.conversations == 1
    # the model saw the app's log, got the project's files, and a path outside was refused
    first = model.requests[0]["messages"][1]["content"]
    assert "SyntaxError" in first and VIRTUAL_KEY not in first
    results = tool_results(model.requests[1])
    assert results["c0"].startswith("refused:") and "outside the project" in results["c0"]
    assert "greeting.js" in results["c1"] and "server.js" in results["c1"]
    assert not (sandbox.home / "escape.txt").exists()
    assert tool_results(model.requests[2])["c2"] == BROKEN_GREETING
    assert set(model.authorizations) == {f"Bearer {VIRTUAL_KEY}"}
    # the change is in the project's git history, where a person can see and revert it
    assert (sandbox.project / "greeting.js").read_text() == FIXED_GREETING
    log = subprocess.run(
        ["git", "log", "--format=%s", "-p", "-1"],
        cwd=sandbox.project,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert log.startswith("healer: attempt 1: fixed a syntax error in greeting.js")
    assert "-module.exports = 'hello' +;" in log and "+module.exports = 'hello again';" in log
    async with ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{sandbox.port}/") as response:
            assert await response.text() == "hello again\n"
    assert VIRTUAL_KEY not in sandbox.healer_log()


def hopeless_script(conversation: int, turn: int) -> dict[str, Any]:
    if turn == 0:
        return {"tool_calls": [tool_call("r", "read_file", path="greeting.js")]}
    return {"content": f"I could not find the cause (conversation {conversation})."}


async def test_an_unfixable_app_is_broken_after_exactly_three_attempts_then_passive(
    aiohttp_server: Any, healer_prepared: PreparedTemplate, start_sandbox: StartSandbox, cloud: CloudReports
) -> None:
    llm = await aiohttp_server(scripted_llm_app(hopeless_script))
    model: ScriptedModel = llm.app[MODEL]
    sandbox = await start_sandbox(
        healer_prepared, sandbox_env(cloud, str(llm.make_url("/v1"))), plant=plant_bug
    )
    await wait_for(lambda: reported(cloud, "broken"), "the healer gives up", limit=150)

    assert model.conversations == 3
    broken = cloud.reports[-1]["message"]
    assert broken.startswith("gave up after 3 attempts.")
    assert "attempt 3: I could not find the cause (conversation 2)." in broken
    attempts = [r["message"] for r in cloud.reports if r["message"].startswith("repair attempt")]
    assert [m.split(":")[0] for m in attempts] == [f"repair attempt {n} of 3" for n in (1, 2, 3)]

    # passive: a person fixes the app and restarts it; the healer only reports what it sees
    (sandbox.project / "greeting.js").write_text(FIXED_GREETING)
    seen = len(cloud.reports)
    await sandbox.pm2("restart", "shmastra")
    await wait_for(lambda: reported(cloud, "ready", seen), "the passive healer reports the app ready")
    plant_bug(sandbox.project)
    seen = len(cloud.reports)
    await sandbox.pm2("restart", "shmastra")
    await wait_for(lambda: reported(cloud, "broken", seen), "the passive healer reports it broken again")
    assert cloud.statuses()[seen:] == ["broken"]
    assert model.conversations == 3

    # the cloud's "retry": a fresh healer starts over with its attempts
    await sandbox.pm2("restart", "healer")
    await wait_for(lambda: model.conversations == 4, "a fresh healer tries again", limit=60)
