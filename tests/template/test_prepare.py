"""``prepare()`` (one install per template digest, atomic, locked, with progress), ``populate_workspace()``
(a cheap per-user copy) and ``node_runtime()`` (a Node new enough for Mastra 1.x)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from plugins.sandbox_router.template import (
    NodeRuntime,
    Progress,
    TemplateError,
    node_runtime,
    populate_workspace,
    prepare,
    template_key,
)
from plugins.sandbox_router.template.node import MINIMUM


def make_template(root: Path, app_package: dict[str, object] | None = None, version: str = "1.2.3") -> Path:
    """A small template: scripts, a healer file, an app (with a package.json when given)."""
    (root / "app" / "src").mkdir(parents=True)
    (root / "healer").mkdir()
    (root / "VERSION").write_text(f"{version}\n")
    (root / "start.sh").write_text("#!/bin/sh\nexec sleep 1\n")
    (root / "start.sh").chmod(0o755)
    (root / "ecosystem.config.js").write_text("module.exports = { apps: [] };\n")
    (root / "healer" / "main.py").write_text("print('healer')\n")
    (root / "app" / "src" / "index.js").write_text("console.log('app');\n")
    if app_package is not None:
        (root / "app" / "package.json").write_text(json.dumps(app_package))
    return root


async def test_a_template_without_dependencies_is_prepared_by_a_plain_copy(tmp_path: Path) -> None:
    template = make_template(tmp_path / "template")
    cache = tmp_path / "cache"
    progress: list[Progress] = []

    prepared = await prepare(template, cache, progress.append)

    assert prepared.version == "1.2.3"
    assert prepared.key == template_key(template) and prepared.key.startswith("1.2.3-")
    assert prepared.root == cache / prepared.key
    assert (prepared.root / "app" / "src" / "index.js").read_text() == "console.log('app');\n"
    assert not (prepared.root / "app" / "node_modules").exists()
    assert [p.step for p in progress] == ["install", "done"] and progress[-1].percent == 100
    # once prepared, a later call installs nothing
    progress.clear()
    assert await prepare(template, cache, progress.append) == prepared
    assert progress == [Progress("done", 100, "template 1.2.3 is ready")]
    assert sorted(p.name for p in cache.iterdir()) == [f".{prepared.key}.lock", prepared.key]


async def test_any_change_to_the_template_makes_a_new_prepared_copy(tmp_path: Path) -> None:
    template = make_template(tmp_path / "template")
    first = await prepare(template, tmp_path / "cache", lambda _p: None)
    (template / "healer" / "main.py").write_text("print('healer, fixed')\n")
    second = await prepare(template, tmp_path / "cache", lambda _p: None)
    assert second.key != first.key and second.version == first.version
    assert (first.root / "healer" / "main.py").read_text() == "print('healer')\n"
    assert (second.root / "healer" / "main.py").read_text() == "print('healer, fixed')\n"


async def test_concurrent_callers_wait_for_one_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = tmp_path / "installs"
    monkeypatch.setenv("INSTALL_COUNTER", str(counter))
    script = "node -e \"require('fs').appendFileSync(process.env.INSTALL_COUNTER, 'x')\""
    template = make_template(
        tmp_path / "template", {"name": "app", "version": "1.0.0", "scripts": {"postinstall": script}}
    )
    reports: list[list[Progress]] = [[], [], []]

    results = await asyncio.gather(*(prepare(template, tmp_path / "cache", r.append) for r in reports))

    assert results[0] == results[1] == results[2]
    assert counter.read_text() == "x"
    assert (results[0].root / "app" / "package-lock.json").is_file()
    installing = [r for r in reports if any("installing the app dependencies" in p.message for p in r)]
    assert len(installing) == 1
    percents = [p.percent for p in installing[0]]
    assert percents == sorted(percents) and percents[-1] == 100
    for report in reports:
        assert report[-1] == Progress("done", 100, "template 1.2.3 is ready")
    assert not list((tmp_path / "cache").glob("*.tmp"))


async def test_callers_in_other_processes_wait_for_one_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = tmp_path / "installs"
    monkeypatch.setenv("INSTALL_COUNTER", str(counter))
    script = "node -e \"require('fs').appendFileSync(process.env.INSTALL_COUNTER, 'x')\""
    template = make_template(
        tmp_path / "template", {"name": "app", "version": "1.0.0", "scripts": {"postinstall": script}}
    )
    program = (
        "import asyncio, sys; from pathlib import Path; "
        "from plugins.sandbox_router.template import prepare; "
        "p = asyncio.run(prepare(Path(sys.argv[1]), Path(sys.argv[2]), lambda _p: None)); print(p.root)"
    )
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            program,
            str(template),
            str(tmp_path / "cache"),
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]
    roots = {(await worker.communicate())[0].decode().strip() for worker in workers}

    assert [worker.returncode for worker in workers] == [0, 0, 0]
    assert len(roots) == 1 and Path(roots.pop()).is_dir()
    assert counter.read_text() == "x"


async def test_a_failed_install_says_why_and_leaves_nothing_half_made(tmp_path: Path) -> None:
    template = make_template(
        tmp_path / "template",
        {"name": "app", "version": "1.0.0", "scripts": {"preinstall": "echo the-install-broke >&2; exit 3"}},
    )
    cache = tmp_path / "cache"
    with pytest.raises(TemplateError) as failed:
        await prepare(template, cache, lambda _p: None)
    assert "npm install in app/ failed" in str(failed.value)
    assert "the-install-broke" in str(failed.value)
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []


async def test_a_template_without_a_version_is_refused_naming_the_file(tmp_path: Path) -> None:
    template = make_template(tmp_path / "template")
    (template / "VERSION").unlink()
    with pytest.raises(TemplateError, match=f"{template / 'VERSION'}: cannot read the template version"):
        await prepare(template, tmp_path / "cache", lambda _p: None)
    (template / "VERSION").write_text("1.0 ../../x\n")
    with pytest.raises(TemplateError, match="the version must be"):
        await prepare(template, tmp_path / "cache", lambda _p: None)
    with pytest.raises(TemplateError, match="the template folder does not exist"):
        await prepare(tmp_path / "nowhere", tmp_path / "cache", lambda _p: None)


async def test_a_workspace_is_a_cheap_copy_sharing_the_installed_dependencies(tmp_path: Path) -> None:
    template = make_template(tmp_path / "template", {"name": "app", "version": "1.0.0"})
    (template / "runtime").mkdir()
    (template / "runtime" / "package.json").write_text('{"name": "runtime", "version": "1.0.0"}')
    prepared = await prepare(template, tmp_path / "cache", lambda _p: None)
    (prepared.root / "app" / "node_modules").mkdir(exist_ok=True)  # npm makes none for no dependencies
    workspace = tmp_path / "users" / "u1"

    populate_workspace(prepared, workspace)

    assert (workspace / ".template-version").read_text() == "1.2.3\n"
    project = workspace / "shmastra"
    assert (project / "src" / "index.js").read_text() == "console.log('app');\n"
    assert os.readlink(project / "node_modules") == str(prepared.root / "app" / "node_modules")
    assert os.readlink(workspace / "runtime") == str(prepared.root / "runtime")
    # the project's files are the user's own: editing one never reaches the prepared copy
    assert not os.path.samefile(project / "src" / "index.js", prepared.root / "app" / "src" / "index.js")
    (project / "src" / "index.js").write_text("console.log('edited');\n")
    assert (prepared.root / "app" / "src" / "index.js").read_text() == "console.log('app');\n"
    # the scripts are copies (a write in one workspace reaches no other), executable as in the template
    assert (workspace / "start.sh").read_text() == (prepared.root / "start.sh").read_text()
    assert not os.path.samefile(workspace / "start.sh", prepared.root / "start.sh")
    assert (workspace / "healer" / "main.py").read_text() == "print('healer')\n"
    assert os.access(workspace / "start.sh", os.X_OK)
    assert not (workspace / "VERSION").exists() and not (workspace / "app").exists()

    # populating again (a newer template) keeps the user's project and refreshes the rest
    (template / "VERSION").write_text("1.2.4\n")
    newer = await prepare(template, tmp_path / "cache", lambda _p: None)
    populate_workspace(newer, workspace)
    assert (project / "src" / "index.js").read_text() == "console.log('edited');\n"
    assert (workspace / ".template-version").read_text() == "1.2.4\n"


async def test_a_template_may_ship_its_project_as_shmastra(tmp_path: Path) -> None:
    template = make_template(tmp_path / "template")
    shutil.rmtree(template / "app")
    (template / "shmastra").mkdir()
    (template / "shmastra" / "package.json").write_text('{"name": "p"}')  # not installed: not app/
    prepared = await prepare(template, tmp_path / "cache", lambda _p: None)
    workspace = tmp_path / "ws"

    populate_workspace(prepared, workspace)
    assert (workspace / "shmastra" / "package.json").read_text() == '{"name": "p"}'
    assert not (workspace / "shmastra" / "node_modules").exists()
    (workspace / "shmastra" / "package.json").write_text('{"name": "mine"}')
    assert (prepared.root / "shmastra" / "package.json").read_text() == '{"name": "p"}'
    populate_workspace(prepared, workspace)
    assert (workspace / "shmastra" / "package.json").read_text() == '{"name": "mine"}'


def test_the_node_runtime_is_new_enough_for_mastra() -> None:
    runtime = node_runtime()
    assert isinstance(runtime, NodeRuntime) and runtime.version >= MINIMUM
    env = runtime.env({"PATH": "/usr/bin:/bin"})
    assert env["PATH"] == f"{runtime.bin_dir}:/usr/bin:/bin"
    shown = subprocess.run(["node", "--version"], env=env, capture_output=True, text=True, check=True).stdout
    assert shown.strip() == "v" + ".".join(map(str, runtime.version))
    npm = subprocess.run(["npm", "--version"], env=env, capture_output=True, text=True, check=True).stdout
    assert npm.strip().split(".")[0].isdigit()
    system = shutil.which("node")
    shown = (
        subprocess.run([system, "--version"], capture_output=True, text=True, check=True).stdout
        if system
        else "v0.0.0"
    )
    system_version = tuple(int(part) for part in shown.strip().lstrip("v").split("."))
    assert runtime.source == ("system" if system_version >= MINIMUM else "wheel")
