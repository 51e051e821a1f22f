"""The stand-in for a sandbox's Mastra dev server: /health, Studio's index.html with the server
placeholders filled in as `mastra dev` does (localhost:4111), an echo, an event stream, a WebSocket
echo and file writes in $SANDBOX_HOME. Like Mastra it requires MASTRA_AUTH_TOKEN on everything but
/health, and it starts a child that ignores SIGTERM (as `mastra dev`'s server does)."""

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from aiohttp import web

HOME = Path(os.environ["SANDBOX_HOME"])
TOKEN = os.environ["MASTRA_AUTH_TOKEN"]
STUDIO = os.environ["MASTRA_STUDIO_BASE_PATH"]
API = os.environ["MASTRA_API_PREFIX"]

INDEX = """<!doctype html><html><head><title>Mastra Studio</title>
<script>
window.MASTRA_STUDIO_BASE_PATH = '';
window.MASTRA_SERVER_HOST = 'localhost';
window.MASTRA_SERVER_PORT = '4111';
window.MASTRA_SERVER_PROTOCOL = 'http';
window.MASTRA_API_PREFIX = '/api';
</script></head>
<body><h1 id="studio">Studio of USER</h1></body></html>
""".replace("USER", os.environ.get("USER_ID", "?"))


@web.middleware
async def token_required(request, handler):
    if request.path != "/health":
        header = request.headers.get("x-mastra-auth-token")
        bearer = request.headers.get("Authorization", "")
        if header != TOKEN or bearer != f"Bearer {TOKEN}":
            return web.json_response({"error": "unauthorized"}, status=401)
    return await handler(request)


async def health(request):
    if (HOME / "NEVER_HEALTHY").exists():
        return web.json_response({"success": False}, status=503)
    return web.json_response({"success": True})


async def studio(request):
    return web.Response(text=INDEX, content_type="text/html")


async def echo(request):
    body = await request.read()
    return web.json_response(
        {
            "path": request.path,
            "raw_path": request.raw_path,
            "method": request.method,
            "headers": dict(request.headers),
            "user_id": os.environ.get("USER_ID"),
            "home": str(HOME),
            "body": body.decode(errors="replace"),
        }
    )


async def env(request):
    return web.json_response(dict(os.environ))


async def stream(request):
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    count = int(request.query.get("count", "1000000"))
    for i in range(count):
        await response.write(f"data: {i}\n\n".encode())
        await asyncio.sleep(0.05)
    return response


async def socket(request):
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        await ws.send_str("echo:" + message.data)
    return ws


async def files(request):
    name = request.query["name"]
    target = HOME / "shmastra" / name
    if request.method == "POST":
        target.write_bytes(await request.read())
        return web.Response(status=204)
    if not target.exists():
        return web.Response(status=404)
    return web.Response(body=target.read_bytes())


def main():
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(3600)",
        ]
    )
    (HOME / ".child.pid").write_text(str(child.pid))
    app = web.Application(middlewares=[token_required])
    app.router.add_get("/health", health)
    app.router.add_get(STUDIO + "/{tail:.*}", studio)
    app.router.add_get(API + "/env", env)
    app.router.add_get(API + "/stream", stream)
    app.router.add_get(API + "/ws", socket)
    app.router.add_route("*", API + "/files", files)
    app.router.add_route("*", "/{tail:.*}", echo)
    web.run_app(app, host="127.0.0.1", port=int(os.environ["PORT"]), print=None, access_log=None)


main()
