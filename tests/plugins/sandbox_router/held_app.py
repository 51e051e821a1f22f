"""The app's server in miniature for the tests of an environment handed over after the start (spares,
E2B snapshots with the app running): a Node server that reads its settings once, at start (as Mastra's
SimpleAuth does), in a template with the bundled template's real ``env.sh`` and ``sandbox-env.mjs``
preload, which holds it until its environment arrives."""

from __future__ import annotations

import shutil
from pathlib import Path

from plugins.sandbox_router.template import BUNDLED_TEMPLATE_DIR

# Answers /health, and any other path with the user it started for (and its pid) when given its token.
SERVER = """import http from 'node:http';
const token = process.env.MASTRA_AUTH_TOKEN;
const user = process.env.USER_ID ?? null;
http.createServer((request, response) => {
  if (request.url === '/health') { response.writeHead(200); response.end('{"success":true}'); return; }
  const allowed = token !== undefined && request.headers['x-mastra-auth-token'] === token;
  response.writeHead(allowed ? 200 : 401, { 'content-type': 'application/json' });
  response.end(JSON.stringify({ user, pid: process.pid }));
}).listen(Number(process.env.PORT), '127.0.0.1');
"""


def held_app_template(folder: Path, server: str, start_sh: str) -> Path:
    """``folder`` made a template: :data:`SERVER` at ``server`` (a path in it), ``start_sh`` as its
    executable ``start.sh``, and the bundled ``env.sh`` and ``sandbox-env.mjs``."""
    (folder / server).parent.mkdir(parents=True)
    (folder / server).write_text(SERVER)
    for name in ("env.sh", "sandbox-env.mjs"):
        shutil.copy(BUNDLED_TEMPLATE_DIR / name, folder / name)
    (folder / "start.sh").write_text(start_sh)
    (folder / "start.sh").chmod(0o755)
    return folder
