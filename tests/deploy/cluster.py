"""A small production-shaped deployment on loopback: N ``shmastra-cloud serve`` processes on one fresh
Postgres database, behind nginx (round-robin, unbuffered, WebSocket-capable), with sandboxes at the E2B
stand-in and model calls going to the LLM provider stand-in. Each replica is a real server process with
its own log file; a test may kill one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from tests.servers import free_port, json_lines, spawn, stop, until_ready

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
COMMAND = Path(sys.executable).parent / "shmastra-cloud"
COOKIE_SECRET = "replicas-test-cookie-secret-0123456789abcdef"
OPENAI_KEY = "sk-real-openai-key-for-the-standin"

CONFIG = """\
[server]
host = "127.0.0.1"
port = "${PORT:-8080}"
public_url = "${PUBLIC_URL}"
trusted_proxies = ["127.0.0.1/32"]
workers = 1
access_log = false
log_format = "json"
shutdown_timeout = 2

[database]
url = "${DATABASE_URL}"
batch_interval = 0.1

[[pipeline]]
stage = "vkey"
activity_flush_seconds = 0.05
[pipeline.providers.openai]
url = "${LLM_URL}/v1"
key_env = "OPENAI_API_KEY"

[[pipeline]]
stage = "manage"
[pipeline.commands]   # the stand-in template has no pm2: restarting its app leaves a mark instead
restart_app = 'echo app >> "$SANDBOX_HOME/restarts"'
[pipeline.rollout]    # each install is logged in the sandbox; SLOW_UPDATE there holds it for seconds
source = "shmastra"
install = 'echo start >> "$SANDBOX_HOME/installs"; sleep "$(cat "$SANDBOX_HOME/SLOW_UPDATE" 2>/dev/null || echo 0)"; echo done >> "$SANDBOX_HOME/installs"'
health_timeout = 10
tick = 0.2

[[pipeline]]
stage = "auth"
provider = "email_code"
cookie_secret = "${COOKIE_SECRET}"
allowed_domains = ["example.com"]
public_paths = ["/api/sandbox/heal"]
[pipeline.email_code]
delivery = "mailbox"
mailbox_dir = "${MAILBOX}"

[[pipeline]]
stage = "sandbox_router"
provider = "e2b"
template_dir = "${TEMPLATE_DIR}"   # what Manage rolls out (sandboxes start from the E2B template)
idle_timeout = "${IDLE_TIMEOUT}"
sweep_interval = "${SWEEP_INTERVAL}"
health_interval = 0.05
health_timeout = 20
route_cache_seconds = 0.5
stream_check_interval = 0.2
max_requests_per_user = 1000
[pipeline.e2b]
api_key = "${E2B_API_KEY}"
api_url = "${E2B_URL}"
sandbox_url = "${E2B_URL}"
domain = "${E2B_DOMAIN}"
start_command = "bash start.sh"
app_check_command = "exec 3<>/dev/tcp/127.0.0.1/$PORT"   # the app already listens (after a resume)
"""

NGINX = """\
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; "" close; }}
    upstream cloud {{
{servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://cloud;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 3600s;
            proxy_next_upstream error timeout;
        }}
    }}
}}
"""


def nginx_binary() -> str:
    """nginx, installed from Debian (``nginx-light``) when the machine has none; CI installs it first."""
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    if found is None:
        subprocess.run(["apt-get", "update", "-qq"], check=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "nginx-light"], check=True, timeout=600)
        found = shutil.which("nginx") or "/usr/sbin/nginx"
    return found


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """A new Postgres database (not a schema: advisory locks, and so the leader, are per database)."""
    name = f"deploy_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(f"{PG_SERVER}/postgres")
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield f"{PG_SERVER}/{name}"
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


@dataclass
class Replica:
    index: int
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def lines(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far."""
        return json_lines(self.log)

    def logged(self, phrase: str) -> list[str]:
        return [str(line.get("msg", "")) for line in self.lines() if phrase in str(line.get("msg", ""))]

    def kill(self) -> None:
        """Gone without a goodbye, as a crashed pod is."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


@dataclass
class Cluster:
    url: str
    database: str
    config: Path
    env: dict[str, str]
    mailbox: Path
    replicas: list[Replica] = field(default_factory=list)

    def at(self, path: str) -> str:
        return self.url + path

    async def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``shmastra-cloud ARGS --config <the replicas' config>`` with their environment, in a thread
        (the stand-ins the command talks to run on this loop, which must stay free)."""
        return await asyncio.to_thread(
            subprocess.run,
            [str(COMMAND), *args, "--config", str(self.config)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    async def query(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        connection = await asyncpg.connect(self.database)
        try:
            rows: list[asyncpg.Record] = await connection.fetch(sql, *args)
            return rows
        finally:
            await connection.close()


@contextlib.asynccontextmanager
async def running_cluster(
    tmp_path: Path,
    database: str,
    e2b_env: dict[str, str],
    llm_url: str,
    replicas: int = 3,
    idle_timeout: float = 3600,
    sweep_interval: float = 3600,
    template_dir: Path | None = None,
) -> AsyncIterator[Cluster]:
    """``template_dir``: the template Manage rolls out (its ``VERSION`` and ``shmastra/``); by default
    an empty one whose version is unknown, so no sandbox is outdated."""
    nginx = nginx_binary()
    front = free_port()
    config = tmp_path / "proxy.toml"
    config.write_text(CONFIG)
    mailbox = tmp_path / "mailbox"
    if template_dir is None:
        template_dir = tmp_path / "rollout-template"
        template_dir.mkdir()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PUBLIC_URL": f"http://127.0.0.1:{front}",
        "DATABASE_URL": database,
        "COOKIE_SECRET": COOKIE_SECRET,
        "MAILBOX": str(mailbox),
        "LLM_URL": llm_url,
        "OPENAI_API_KEY": OPENAI_KEY,
        "IDLE_TIMEOUT": str(idle_timeout),
        "SWEEP_INTERVAL": str(sweep_interval),
        "E2B_API_KEY": e2b_env["E2B_API_KEY"],
        "E2B_URL": e2b_env["E2B_API_URL"],
        "E2B_DOMAIN": e2b_env["E2B_DOMAIN"],
        "TEMPLATE_DIR": str(template_dir),
    }
    cluster = Cluster(f"http://127.0.0.1:{front}", database, config, env, mailbox)
    nginx_process: subprocess.Popen[bytes] | None = None
    try:
        for index in range(replicas):
            port = free_port()
            log = tmp_path / f"replica-{index}.log"
            process = spawn([str(COMMAND), "serve", "--config", str(config)], env | {"PORT": str(port)}, log)
            cluster.replicas.append(Replica(index, port, process, log))
        async with aiohttp.ClientSession() as probe:
            for r in cluster.replicas:
                await until_ready(probe, r.url, r.process, r.log, f"replica {r.index}")
        prefix = tmp_path / "nginx"
        prefix.mkdir()
        servers = "\n".join(
            f"        server 127.0.0.1:{r.port} max_fails=1 fail_timeout=2s;" for r in cluster.replicas
        )
        (prefix / "nginx.conf").write_text(NGINX.format(prefix=prefix, servers=servers, port=front))
        nginx_process = spawn(
            [nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"],
            None,
            prefix / "stderr.log",
        )
        async with aiohttp.ClientSession() as probe:
            for _ in range(100):
                with contextlib.suppress(aiohttp.ClientError):
                    async with probe.get(cluster.at("/healthz")) as answer:
                        if answer.status == 200:
                            break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("nginx did not start: " + (prefix / "error.log").read_text())
        yield cluster
    finally:
        if nginx_process is not None:
            nginx_process.send_signal(signal.SIGQUIT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                nginx_process.wait(timeout=10)
            if nginx_process.poll() is None:
                nginx_process.kill()
        await asyncio.gather(*(stop(replica.process, 15) for replica in cluster.replicas))
