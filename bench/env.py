"""Setting up what the benchmarks need when it is missing: wrk, nginx and configurable-http-proxy."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

CHP_VERSION = "5.3.0"
REPO = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "shmastra-bench"


def chp_dir() -> Path:
    """Where configurable-http-proxy is installed: ``$CHP_DIR``, else a cache directory."""
    return Path(os.environ.get("CHP_DIR") or cache_dir() / "chp")


def chp_script() -> Path:
    return chp_dir() / "node_modules" / "configurable-http-proxy" / "bin" / "configurable-http-proxy"


def node_version() -> str:
    """The version of the ``node`` that runs CHP (the first on ``PATH``, as for the anchor script).
    It matters: from node 19 on, CHP keeps its upstream connections alive (node's default agent)."""
    try:
        out = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "missing"
    return out.strip()


def _as_root(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0 or not shutil.which("sudo"):
        return cmd
    return ["sudo", *cmd]


def ensure_tools(need_wrk: bool = True, need_nginx: bool = True, need_chp: bool = True) -> None:
    missing = [
        name
        for name, needed in (("wrk", need_wrk), ("nginx", need_nginx))
        if needed and not shutil.which(name)
    ]
    if missing:
        print(f"installing {', '.join(missing)} with apt-get", file=sys.stderr)
        packages = ["wrk" if m == "wrk" else "nginx-light" for m in missing]
        subprocess.run(_as_root(["apt-get", "update"]), check=True)
        subprocess.run(_as_root(["apt-get", "install", "-y", *packages]), check=True)
    if need_chp and not chp_script().exists():
        if not shutil.which("npm"):
            raise SystemExit("configurable-http-proxy needs node and npm: apt-get install -y nodejs npm")
        print(f"installing configurable-http-proxy@{CHP_VERSION} into {chp_dir()}", file=sys.stderr)
        chp_dir().mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(chp_dir()),
                f"configurable-http-proxy@{CHP_VERSION}",
            ],
            check=True,
        )


def raise_fd_limit(wanted: int = 20_000) -> int:
    """Lift the soft open-files limit (children inherit it): thousands of idle sockets need it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return max(soft, target)
