"""The seams between modules: no import cycles, plugins meet only through each other's public API,
the core knows no plugin, and every module imports on its own in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

from .imports import ROOT, Edge, cycles, edges, modules


def test_the_graph_sees_imports_of_every_kind():
    graph = {(e.source, e.target) for e in edges()}
    assert ("proxy_core.app", "proxy_core.config") in graph  # from .config import ...
    assert ("plugins.auth.resolver", "plugins.auth.csrf") in graph  # from . import csrf
    assert ("plugins.vkey.stage", "proxy_core") in graph  # from proxy_core import ...


def test_the_cycle_finder_finds_a_cycle():
    made_up = [Edge("a", "b", 1), Edge("b", "c", 1), Edge("c", "a", 1), Edge("c", "d", 1)]
    assert cycles(made_up) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert cycles(edges()) == []


def _owner(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "plugins" and len(parts) > 1 else parts[0]


def test_plugins_use_only_each_others_package_api():
    crossing = [
        f"{e.source} (line {e.line}) imports {e.target}"
        for e in edges()
        if e.source.startswith("plugins.")
        and e.target.startswith("plugins.")
        and _owner(e.source) != _owner(e.target)
        and e.target != _owner(e.target)
    ]
    assert crossing == []


def test_the_core_imports_no_plugin():
    assert [e for e in edges() if e.source.startswith("proxy_core") and e.target.startswith("plugins")] == []


def test_every_module_imports_alone_in_a_fresh_interpreter():
    names = sorted(name for name in modules() if not name.endswith(".__main__"))  # those run a program
    script = (
        "import importlib, sys, traceback\n"
        "failed = []\n"
        "for name in sys.argv[1:]:\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] in ('proxy_core', 'plugins')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        failed.append(name + ': ' + traceback.format_exc(limit=1))\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    forward = subprocess.run(
        [sys.executable, "-c", script, *names], cwd=ROOT, capture_output=True, text=True, check=False
    )
    backward = subprocess.run(
        [sys.executable, "-c", script, *reversed(names)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (forward.returncode, forward.stdout, forward.stderr) == (0, "\n", "")
    assert (backward.returncode, backward.stdout, backward.stderr) == (0, "\n", "")
