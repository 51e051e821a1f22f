"""The production server: limits on malformed and oversized requests, ops endpoints, graceful shutdown,
and the ``shmastra-cloud`` command (check, serve, workers)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from proxy_core import Stage, StageConfig
from proxy_core.cli import main
from proxy_core.server import runner_for
from proxy_core.stages.upstream import UpstreamStage
from proxy_core.testing import config_from_toml, echo_app, make_app, run_proxy, stage


async def raw_request(host: str, port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(data)
    await writer.drain()
    response = await reader.read()
    writer.close()
    return response


async def test_oversized_header_gets_431(aiohttp_server: Any) -> None:
    upstream = await aiohttp_server(echo_app())
    config = config_from_toml("[server]\naccess_log = false\nmax_header_size = 1024\n")
    app = make_app([stage(UpstreamStage, url=str(upstream.make_url("/")))], config)
    async with run_proxy(app) as url:
        assert url.host is not None and url.port is not None
        big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000 + b"\r\nAccept: application/json\r\n\r\n"
        response = await raw_request(url.host, url.port, big)
        assert response.split(b" ", 2)[1] == b"431"
        assert b"header fields are too large" in response
        long_line = b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        assert (await raw_request(url.host, url.port, long_line)).split(b" ", 2)[1] == b"414"


async def test_malformed_request_gets_400_with_a_readable_body(aiohttp_server: Any) -> None:
    upstream = await aiohttp_server(echo_app())
    app = make_app([stage(UpstreamStage, url=str(upstream.make_url("/")))])
    async with run_proxy(app) as url:
        assert url.host is not None and url.port is not None
        response = await raw_request(url.host, url.port, b"GET / HTTP/1.1\r\nBad Header Line\r\n\r\n")
        assert response.split(b" ", 2)[1] == b"400"
        assert b"could not be understood" in response


async def test_metrics_count_requests_and_upstream_errors(aiohttp_client: Any, unused_tcp_port: int) -> None:
    app = make_app([stage(UpstreamStage, url=f"http://127.0.0.1:{unused_tcp_port}")])
    client = await aiohttp_client(app)
    for _ in range(3):
        await client.get("/x")
    text = await (await client.get("/metrics")).text()
    assert 'proxy_requests_total{method="GET",status="502"} 3' in text
    assert 'proxy_upstream_errors_total{stage="upstream",kind="connect"} 3' in text
    assert "proxy_request_duration_seconds_count 3" in text
    assert "# TYPE proxy_open_websockets gauge" in text


async def test_healthz(aiohttp_client: Any) -> None:
    client = await aiohttp_client(make_app([]))
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_graceful_shutdown_lets_in_flight_requests_finish(aiohttp_server: Any) -> None:
    started = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        started.set()
        await asyncio.sleep(0.5)
        return web.Response(text="finished")

    upstream_app = web.Application()
    upstream_app.router.add_get("/", slow)
    upstream = await aiohttp_server(upstream_app)
    config = config_from_toml("[server]\naccess_log = false\nshutdown_timeout = 5\n")
    app = make_app([stage(UpstreamStage, url=str(upstream.make_url("/")))], config)
    runner = runner_for(app, config)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as session:
        pending = asyncio.ensure_future(session.get(f"http://127.0.0.1:{port}/"))
        await started.wait()
        await runner.cleanup()  # what SIGTERM does
        resp = await pending
        assert await resp.text() == "finished"


@pytest.fixture
def proxy_toml(tmp_path: Path, unused_tcp_port: int) -> Path:
    path = tmp_path / "proxy.toml"
    path.write_text(
        f'[server]\nport = {unused_tcp_port}\nlog_level = "info"\n\n'
        '[[pipeline]]\nstage = "upstream"\nurl = "http://127.0.0.1:9"\n'
    )
    return path


def test_check_succeeds_on_a_valid_file(proxy_toml: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(proxy_toml)]) == 0
    assert capsys.readouterr().out == f"{proxy_toml}: OK (1 stages: upstream)\n"


def test_check_fails_with_the_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[pipeline]]\nstage = "upstream"\nurl = 5\n')
    assert main(["check", "--config", str(bad)]) == 1
    assert capsys.readouterr().err == (
        f"error: {bad}: [[pipeline]] #1 (stage 'upstream'): key 'url': URL input should be a string or URL (got 5)\n"
    )


@pytest.fixture
def served(proxy_toml: Path, request: pytest.FixtureRequest) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    workers = getattr(request, "param", 1)
    text = proxy_toml.read_text().replace("[server]\n", f"[server]\nworkers = {workers}\n")
    proxy_toml.write_text(text)
    port = int(text.split("port = ")[1].split("\n")[0])
    process = subprocess.Popen(
        [sys.executable, "-m", "proxy_core.cli", "serve", "--config", str(proxy_toml)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its workers in its process group, so a failed test ends them all
    )
    try:
        yield process, port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


async def _wait_healthy(port: int) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(1200):  # a minute: a loaded machine can take seconds to start workers
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("the server never became healthy")


async def test_serve_logs_json_and_stops_cleanly_on_sigterm(
    served: tuple[subprocess.Popen[bytes], int],
) -> None:
    process, port = served
    await _wait_healthy(port)
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{port}/api?key=sk-secret", headers={"Accept": "application/json"}
        ) as resp,
    ):
        assert resp.status == 502
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=20)
    assert process.returncode == 0
    lines = err.decode().splitlines()
    access = [line for line in lines if '"logger":"access"' in line]
    assert len(access) == 1
    assert '"path":"/api"' in access[0] and '"status":502' in access[0]
    assert "sk-secret" not in err.decode()


@pytest.mark.parametrize("served", [2], indirect=True)
async def test_workers_share_the_port_and_metrics(served: tuple[subprocess.Popen[bytes], int]) -> None:
    process, port = served
    await _wait_healthy(port)
    async with aiohttp.ClientSession() as session:
        for _ in range(40):
            async with session.get(f"http://127.0.0.1:{port}/x", headers={"Connection": "close"}) as resp:
                assert resp.status == 502
        expected = 'proxy_requests_total{method="GET",status="502"} 40'
        for _ in range(150):  # each worker publishes its numbers every second (slower when loaded)
            await asyncio.sleep(0.1)
            async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                text = await resp.text()
            if expected in text:
                break
    assert expected in text
    children = subprocess.run(
        ["pgrep", "-P", str(process.pid)], capture_output=True, text=True
    ).stdout.split()
    assert len(children) >= 2
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=30)
    assert process.returncode == 0
    for _ in range(100):  # the workers (and multiprocessing's helper) exit with the supervisor
        if not any(os.path.exists(f"/proc/{pid}") for pid in children):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"worker processes outlived the supervisor: {children}")


async def test_shutdown_closes_proxied_websockets_with_going_away(aiohttp_server: Any) -> None:
    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            await ws.send_str(msg.data)
        return ws

    upstream_app = web.Application()
    upstream_app.router.add_get("/ws", echo)
    upstream = await aiohttp_server(upstream_app)
    config = config_from_toml("[server]\naccess_log = false\nshutdown_timeout = 30\n")
    app = make_app([stage(UpstreamStage, url=str(upstream.make_url("/")))], config)
    runner = runner_for(app, config)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"http://127.0.0.1:{port}/ws")
        await ws.send_str("hi")
        assert (await ws.receive()).data == "hi"
        async with asyncio.timeout(10):  # far less than shutdown_timeout: nothing waits for the socket
            await runner.cleanup()
            msg = await ws.receive()
        assert msg.data == 1001


async def test_client_leaving_mid_download_is_a_quiet_499(
    aiohttp_server: Any, tmp_path: Path, unused_tcp_port: int
) -> None:
    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(64 * 1024 * 1024)})
        await resp.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(1024):
                await resp.write(b"z" * 65536)
        return resp

    upstream_app = web.Application()
    upstream_app.router.add_get("/", big)
    upstream = await aiohttp_server(upstream_app)
    config = tmp_path / "proxy.toml"
    config.write_text(
        f'[server]\nport = {unused_tcp_port}\n[[pipeline]]\nstage = "upstream"\nurl = "{upstream.make_url("/")}"\n'
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "proxy_core.cli",
        "serve",
        "--config",
        str(config),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await _wait_healthy(unused_tcp_port)
        for _ in range(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", unused_tcp_port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await reader.readexactly(65536)
            writer.transport.abort()  # a reset, while the proxy is still writing
        async with aiohttp.ClientSession() as session:
            async with asyncio.timeout(10):
                while True:
                    async with session.get(f"http://127.0.0.1:{unused_tcp_port}/metrics") as resp:
                        text = await resp.text()
                    if 'proxy_requests_total{method="GET",status="499"} 10' in text:
                        break
                    await asyncio.sleep(0.05)
        assert 'status="500"' not in text
    finally:
        process.terminate()
        _, err = await process.communicate()
    assert b'"level":"error"' not in err


def test_serve_on_a_busy_port_fails_with_a_message(proxy_toml: Path) -> None:
    port = int(proxy_toml.read_text().split("port = ")[1].split("\n")[0])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        result = subprocess.run(
            [sys.executable, "-m", "proxy_core.cli", "serve", "--config", str(proxy_toml)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert (
        result.stderr.splitlines()[-1] == f"error: cannot listen on 127.0.0.1:{port}: address already in use"
    )


async def test_handlers_still_see_their_application() -> None:
    """The production runner drops aiohttp's current-app middleware (the app has no sub-apps); a
    request still knows its application, and the pipeline still runs in front of the handler."""
    seen: list[object] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.app)
        seen.append(request.match_info.current_app)
        return web.Response(text="mine")

    class Route(Stage[StageConfig]):
        def routes(self) -> list[web.RouteDef]:
            return [web.get("/mine", handler)]

    app = make_app([stage(Route)], "")
    async with run_proxy(app) as url, aiohttp.ClientSession() as session:
        async with session.get(f"{url}/mine") as resp:
            assert (resp.status, await resp.text()) == (200, "mine")
        async with session.get(f"{url}/metrics") as resp:
            assert 'proxy_requests_total{method="GET",status="200"} 1' in await resp.text()
    assert seen == [app, app]
