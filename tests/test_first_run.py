"""The first run, as a new user meets it: the shipped ``proxy.toml`` served from another folder with
``--config``; the banner says where to go, who may sign in and where codes go (JSON and on a
terminal); the sign-in code stands on its own line; relative paths land beside the config file;
``check`` writes nothing."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parent.parent
COMMAND = [sys.executable, "-m", "proxy_core.cli"]


def _environment() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "SHMASTRA_ADMIN_EMAIL", "PROXY_CONFIG")
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _config(folder: Path, port: int, extra: str = "") -> Path:
    """The shipped ``proxy.toml`` with another port (and ``extra`` lines in ``[server]``)."""
    text = (REPO / "proxy.toml").read_text()
    text = text.replace("port = 8080", f"port = {port}\n{extra}", 1)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "proxy.toml"
    path.write_text(text)
    return path


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_check_from_another_folder_writes_nothing(tmp_path: Path, unused_tcp_port: int) -> None:
    config = _config(tmp_path / "deploy", unused_tcp_port)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        [*COMMAND, "check", "--config", str(config)],
        cwd=elsewhere,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "OK (4 stages: vkey, manage, auth, sandbox_router)" in done.stdout
    assert _files(elsewhere) == set()
    assert _files(tmp_path / "deploy") == {"proxy.toml"}


@contextmanager
def _serving(config: Path, cwd: Path, stderr: int) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [*COMMAND, "serve", "--config", str(config)], cwd=cwd, env=_environment(), stderr=stderr
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _read_until(
    read_line: Callable[[], str], predicate: Callable[[str], bool], limit: int = 400
) -> tuple[str, list[str]]:
    """Lines up to the first matching one (returned with every line read so far)."""
    seen: list[str] = []
    for _ in range(limit):
        line = read_line()
        if not line:
            break
        seen.append(line)
        if predicate(line):
            return line, seen
    raise AssertionError("not found in:\n" + "".join(seen))


async def _ask_for_a_code(base: str, email: str) -> tuple[aiohttp.ClientSession, str]:
    session = aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True), headers={"Accept": "text/html"}
    )
    async with session.get(base + "/auth/sign-in") as response:
        page = await response.text()
    csrf = re.search(r'name="csrf_token" value="([^"]*)"', page)
    assert csrf
    form = {"email": email, "csrf_token": csrf.group(1), "next": "/"}
    async with session.post(base + "/auth/code", data=form) as response:
        assert response.status == 200
        return session, await response.text()


async def _enter(session: aiohttp.ClientSession, base: str, page: str, code: str) -> int:
    csrf = re.search(r'name="csrf_token" value="([^"]*)"', page)
    assert csrf
    form = {"code": code, "csrf_token": csrf.group(1)}
    async with session.post(base + "/auth/code/verify", data=form, allow_redirects=False) as response:
        return response.status


def test_serve_from_another_folder_json_banner_and_code(tmp_path: Path, unused_tcp_port: int) -> None:
    deploy, elsewhere = tmp_path / "deploy", tmp_path / "elsewhere"
    config = _config(deploy, unused_tcp_port)
    elsewhere.mkdir()
    with _serving(config, elsewhere, subprocess.PIPE) as process:
        assert process.stderr is not None
        stream = process.stderr

        def read_line() -> str:
            return stream.readline().decode()

        line, _ = _read_until(read_line, lambda text: '"event":"ready"' in text)
        banner = json.loads(line)  # not a TTY: JSON, one line
        base = f"http://127.0.0.1:{unused_tcp_port}"
        assert banner["url"] == base
        assert banner["msg"] == (
            f"ready: open {base}; sign in as admin@example.com or an existing user; "
            "sign-in codes appear in this log"
        )

        async def sign_in() -> None:
            session, page = await _ask_for_a_code(base, "admin@example.com")
            async with session:
                line, _ = await asyncio.to_thread(
                    _read_until, read_line, lambda text: '"event":"sign_in_code"' in text
                )
                entry = json.loads(line)
                assert entry["email"] == "admin@example.com"
                assert re.fullmatch(r"\d{6}", entry["code"])
                assert entry["msg"].startswith(f"Sign-in code for admin@example.com: {entry['code']}")
                assert await _enter(session, base, page, entry["code"]) == 303

        asyncio.run(sign_in())
    assert process.returncode == 0
    assert _files(elsewhere) == set()  # nothing lands in the folder the command ran from
    assert {"data/shmastra.db", "data/auth_cookie_secret"} <= _files(deploy)


def test_on_a_terminal_the_banner_and_code_stand_out(tmp_path: Path, unused_tcp_port: int) -> None:
    config = _config(tmp_path / "deploy", unused_tcp_port)
    controller, terminal = pty.openpty()
    buffer = b""

    def read_line() -> str:
        nonlocal buffer
        while b"\n" not in buffer:
            try:
                chunk = os.read(controller, 4096)
            except OSError:
                return ""
            if not chunk:
                return ""
            buffer += chunk
        line, _, buffer = buffer.partition(b"\n")
        return line.decode().rstrip("\r") + "\n"

    try:
        with _serving(config, tmp_path, terminal):
            line, seen = _read_until(read_line, lambda text: text.startswith("==> ready: open"))
            assert seen[-2].strip() == ""  # set off by a blank line
            assert "sign-in codes appear in this log" in line
            assert not any(text.lstrip().startswith("{") for text in seen)  # human lines, not JSON
            base = f"http://127.0.0.1:{unused_tcp_port}"

            async def ask() -> None:
                session, _ = await _ask_for_a_code(base, "admin@example.com")
                await session.close()

            asyncio.run(ask())
            line, seen = _read_until(read_line, lambda text: text.startswith("==> Sign-in code for"))
            assert re.fullmatch(
                r"==> Sign-in code for admin@example\.com: \d{6} \(valid 10 minutes\)\n", line
            )
            assert seen[-2].strip() == ""
            line, _ = _read_until(read_line, lambda text: " access " in text and "/auth/code" in text)
            assert re.fullmatch(
                r"\d\d:\d\d:\d\d access  POST /auth/code 200 [\d.]+ms \d+B 127\.0\.0\.1\n", line
            )
    finally:
        os.close(controller)
        os.close(terminal)
