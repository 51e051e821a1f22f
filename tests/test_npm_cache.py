"""The one way tests install Node packages: once per lockfile into the test cache, even when several
installs of the same lockfile start at once."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from tests import npm_cache
from tests.npm_cache import npm_installed

WS_PEERS = Path(__file__).parent / "core" / "ws_peers"


@pytest.mark.slow
def test_concurrent_installs_of_one_lockfile_run_npm_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHMASTRA_TEST_CACHE", str(tmp_path / "cache"))
    runs: list[list[str]] = []
    real_run = subprocess.run

    def counted(command: list[str], **options: Any) -> Any:
        runs.append(command)
        return real_run(command, **options)

    monkeypatch.setattr(npm_cache.subprocess, "run", counted)
    found: list[Path] = []
    installs = [
        threading.Thread(target=lambda: found.append(npm_installed("ws", WS_PEERS))) for _ in range(3)
    ]
    for install in installs:
        install.start()
    for install in installs:
        install.join(timeout=600)
    assert len(runs) == 1 and runs[0][1] == "ci"
    assert len(set(found)) == 1 and len(found) == 3
    (folder,) = set(found)
    assert folder.parent == tmp_path / "cache" and (folder / "node_modules" / "ws" / "package.json").is_file()
    assert sorted(p.name for p in folder.parent.iterdir() if not p.name.endswith(".lock")) == [folder.name]

    other = tmp_path / "other"  # another lockfile: a folder of its own
    other.mkdir()
    for name in npm_cache.MANIFESTS:
        (other / name).write_text((WS_PEERS / name).read_text().replace("shmastra-tests-ws-peers", "other"))
    assert npm_installed("ws", other) != folder and len(runs) == 2
