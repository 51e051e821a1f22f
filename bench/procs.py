"""Starting and stopping the processes under test, and reading their RSS and open descriptors."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .env import REPO, chp_script

HOST = "127.0.0.1"
SMALL_BODY = "hello from upstream, a small body of about one hundred bytes for a proxy benchmark\n"


def two_cpus() -> bool:
    return (os.cpu_count() or 1) >= 2


def pin(cpus: str | None) -> list[str]:
    """A ``taskset`` prefix (``taskset`` execs, so the pid stays the measured process's)."""
    return ["taskset", "-c", cpus] if cpus and two_cpus() else []


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.args!r} exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {HOST}:{port} after {timeout} s")


@dataclass
class Service:
    """A started process (its own process group) listening on ``port``."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    files: list[Path] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for path in self.files:
            with contextlib.suppress(OSError):
                path.unlink()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def spawn(
    name: str,
    cmd: Sequence[str],
    port: int,
    *,
    cpus: str | None = None,
    files: Sequence[Path] = (),
    env: dict[str, str] | None = None,
    repo: Path = REPO,
) -> Service:
    proc = subprocess.Popen(
        [*pin(cpus), *cmd],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo), **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    service = Service(name, proc, port, list(files))
    try:
        wait_for_port(port, proc=proc)
    except BaseException:
        service.stop()
        raise
    return service


def write_temp(text: str, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix="shmastra-bench-", suffix=suffix)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return Path(name)


def nginx_upstream(cpus: str | None = None) -> Service:
    """nginx answering every request with a ~100-byte body (the throughput benchmark's upstream)."""
    port = free_port()
    tmp = tempfile.gettempdir()
    conf = write_temp(
        f"worker_processes 1; daemon off; pid {tmp}/shmastra-bench-up-{port}.pid; error_log /dev/null;\n"
        "events { worker_connections 4096; }\n"
        f"http {{ access_log off; server {{ listen {HOST}:{port};"
        f' location / {{ return 200 "{SMALL_BODY[:-1]}\\n"; }} }} }}\n',
        ".conf",
    )
    return spawn("nginx-upstream", ["nginx", "-c", str(conf)], port, cpus=cpus, files=[conf])


def aiohttp_upstream(cpus: str | None = None) -> Service:
    """The aiohttp test upstream of :mod:`bench.upstream` (streams, SSE, WebSockets, resets)."""
    port = free_port()
    return spawn("aiohttp-upstream", [sys.executable, "-m", "bench.upstream", str(port)], port, cpus=cpus)


def ours(
    upstream: str,
    *,
    cpus: str | None = None,
    workers: int = 1,
    access_log: bool = False,
    extra_pipeline: str = "",
    label: str = "",
    upstream_options: str = "",
    name: str | None = None,
    repo: Path = REPO,
) -> Service:
    """Ours in front of ``upstream``: ``extra_pipeline`` (TOML: ``[database]``, stages) goes before the
    ``upstream`` stage. The access log goes to stderr, which is ``/dev/null``. ``repo``: the checkout
    whose ``proxy_core`` and plugins run (another one, to compare two versions)."""
    port = free_port()
    conf = write_temp(
        f"[server]\nport = {port}\nworkers = {workers}\naccess_log = {str(access_log).lower()}\n"
        'max_body_size = 0\nlog_format = "json"\n'
        f"{extra_pipeline}"
        f'[[pipeline]]\nstage = "upstream"\nurl = "{upstream}"\nidle_timeout = 3600\n{upstream_options}',
        ".toml",
    )
    name = name or (
        f"ours (workers={workers})" + (" +access log" if access_log else "") + (f" {label}" if label else "")
    )
    return spawn(
        name,
        [sys.executable, "-m", "proxy_core.cli", "serve", "-c", str(conf)],
        port,
        cpus=cpus,
        files=[conf],
        repo=repo,
    )


def chp(upstream: str, *, cpus: str | None = None, api: int | None = None, token: str = "") -> Service:
    """CHP in front of ``upstream``; its REST API on port ``api`` (default: any), with ``token`` as
    ``CONFIGPROXY_AUTH_TOKEN`` when given."""
    port, api = free_port(), api or free_port()
    cmd = [
        "node",
        str(chp_script()),
        "--ip",
        HOST,
        "--port",
        str(port),
        "--api-ip",
        HOST,
        "--api-port",
        str(api),
        "--default-target",
        upstream,
    ]
    env = {"CONFIGPROXY_AUTH_TOKEN": token} if token else None
    return spawn("configurable-http-proxy", cmd, port, cpus=cpus, env=env)


def naive(upstream: str, *, cpus: str | None = None, uvloop: bool = True) -> Service:
    port = free_port()
    cmd = [sys.executable, "-m", "bench.naive_proxy", str(port), upstream, *(["--uvloop"] if uvloop else [])]
    return spawn("naive aiohttp" + (" +uvloop" if uvloop else ""), cmd, port, cpus=cpus)


def nginx_proxy(upstream: str, *, cpus: str | None = None) -> Service:
    port = free_port()
    tmp = tempfile.gettempdir()
    target = upstream.removeprefix("http://")
    conf = write_temp(
        f"worker_processes 1; daemon off; pid {tmp}/shmastra-bench-px-{port}.pid; error_log /dev/null;\n"
        "events { worker_connections 4096; }\n"
        f"http {{ access_log off; upstream u {{ server {target}; keepalive 64; }}\n"
        f" server {{ listen {HOST}:{port}; location / {{ proxy_pass http://u; proxy_http_version 1.1;"
        ' proxy_set_header Connection ""; } } }\n',
        ".conf",
    )
    return spawn("nginx proxy", ["nginx", "-c", str(conf)], port, cpus=cpus, files=[conf])


# -- what a process holds ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Snapshot:
    """A process's resident memory and open descriptors at one moment."""

    rss_kb: int
    fds: int

    @classmethod
    def of(cls, pid: int) -> Snapshot:
        return cls(rss_kb(pid), fd_count(pid))


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def group_members(pgid: int) -> list[int]:
    """The live processes of the process group ``pgid``."""
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                    members.append(int(entry.name))
    return members


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time the processes ``pids`` have used so far (on a shared machine a steadier
    figure than wall time: other work delays a process but does not add to its CPU time)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def pin_group(pgid: int, cpus: str) -> None:
    """Move every process (and thread) of the group ``pgid`` to ``cpus``, where the machine has 2+."""
    if two_cpus():
        for pid in group_members(pgid):
            subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], capture_output=True, check=False)


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    return inodes


def tcp_sockets(pid: int, listen_port: int) -> dict[str, int]:
    """The process's TCP sockets by role: ``listening``, ``client`` (accepted on ``listen_port``) and
    ``upstream`` (everything it connected out)."""
    inodes = _socket_inodes(pid)
    counts = {"listening": 0, "client": 0, "upstream": 0}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if parts[9] not in inodes:
                    continue
                local_port = int(parts[1].rsplit(":", 1)[1], 16)
                if parts[3] == "0A":
                    counts["listening"] += 1
                elif local_port == listen_port:
                    counts["client"] += 1
                else:
                    counts["upstream"] += 1
    return counts
