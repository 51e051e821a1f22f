"""The template's hand-over of a sandbox's own environment to processes a snapshot already runs:
``sandbox-env.mjs`` (preloaded by ``env.sh`` into Node when ``SHMASTRA_ENV_FILE`` is set) holds the
app's server before any of its code runs until the file arrives; the healer's ``sandbox_env`` does the
same for the healer. Real bash, real Node."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from plugins.sandbox_router.template import BUNDLED_TEMPLATE_DIR, node_runtime

PRINT_ENV = (
    "console.log(JSON.stringify({token: process.env.MASTRA_AUTH_TOKEN ?? null, user: process.env.USER_ID}))"
)


def _node(home: Path, script: Path, env_file: Path | None) -> subprocess.Popen[str]:
    """``script`` run by Node from a shell that sourced the template's ``env.sh``."""
    env = {"PATH": f"{node_runtime().bin_dir}:/usr/bin:/bin", "SANDBOX_HOME": str(home), "USER_ID": "build"}
    if env_file is not None:
        env["SHMASTRA_ENV_FILE"] = str(env_file)
    command = f'source "{BUNDLED_TEMPLATE_DIR / "env.sh"}" && exec node "{script}"'
    return subprocess.Popen(["bash", "-c", command], env=env, stdout=subprocess.PIPE, text=True)


@pytest.fixture
def server(tmp_path: Path) -> Path:
    script = tmp_path / "shmastra" / ".mastra" / "output" / "index.mjs"
    script.parent.mkdir(parents=True)
    script.write_text(PRINT_ENV)
    return script


def _wait_for(path: Path, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_the_apps_server_waits_for_the_env_file_then_starts_with_it(tmp_path: Path, server: Path) -> None:
    env_file = tmp_path / ".sandbox-env.json"
    process = _node(tmp_path, server, env_file)
    try:
        _wait_for(Path(f"{env_file}.waiting"))  # the template's ready check
        time.sleep(0.3)
        assert process.poll() is None  # held before any of the app's code ran
        env_file.write_text('{"MASTRA_AUTH_TOKEN": "per-sand')  # half written: still waiting
        time.sleep(0.3)
        assert process.poll() is None
        env_file.write_text(json.dumps({"MASTRA_AUTH_TOKEN": "per-sandbox", "USER_ID": "u1", "N": 1}))
        out, _ = process.communicate(timeout=20)
    finally:
        process.kill()
    assert json.loads(out) == {"token": "per-sandbox", "user": "u1"}  # the file wins over the build's
    assert not Path(f"{env_file}.waiting").exists()


def test_a_server_started_later_reads_the_file_at_once(tmp_path: Path, server: Path) -> None:
    env_file = tmp_path / ".sandbox-env.json"
    env_file.write_text(json.dumps({"MASTRA_AUTH_TOKEN": "per-sandbox"}))
    out, _ = _node(tmp_path, server, env_file).communicate(timeout=20)
    assert json.loads(out) == {"token": "per-sandbox", "user": "build"}


def test_other_node_processes_and_sandboxes_without_the_setting_pass_through(
    tmp_path: Path, server: Path
) -> None:
    other = tmp_path / "cli.mjs"  # e.g. the mastra CLI or pm2: never held
    other.write_text(PRINT_ENV)
    env_file = tmp_path / "never-written.json"
    assert json.loads(_node(tmp_path, other, env_file).communicate(timeout=20)[0])["token"] is None
    assert json.loads(_node(tmp_path, server, None).communicate(timeout=20)[0])["token"] is None  # local
    assert not Path(f"{env_file}.waiting").exists()


def test_the_healer_waits_for_the_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BUNDLED_TEMPLATE_DIR / "healer"))
    sys.modules.pop("sandbox_env", None)
    sandbox_env = importlib.import_module("sandbox_env")
    env_file = tmp_path / ".sandbox-env.json"
    env = {"SHMASTRA_ENV_FILE": str(env_file), "SHMASTRA_VIRTUAL_KEY": ""}
    loading = threading.Thread(target=sandbox_env.load, args=(env,))
    loading.start()
    time.sleep(0.3)
    assert loading.is_alive()
    env_file.write_text(json.dumps({"SHMASTRA_VIRTUAL_KEY": "vk_u1_abc", "SHMASTRA_CLOUD_URL": "http://c"}))
    loading.join(10)
    assert not loading.is_alive()
    assert env == {
        "SHMASTRA_ENV_FILE": str(env_file),
        "SHMASTRA_VIRTUAL_KEY": "vk_u1_abc",
        "SHMASTRA_CLOUD_URL": "http://c",
    }
    untouched = {"SHMASTRA_VIRTUAL_KEY": "vk_local"}
    sandbox_env.load(untouched)  # no SHMASTRA_ENV_FILE (the local provider): as it is
    assert untouched == {"SHMASTRA_VIRTUAL_KEY": "vk_local"}
    sys.modules.pop("sandbox_env", None)
