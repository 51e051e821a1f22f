#!/usr/bin/env bash
# One command for every benchmark: bench/run.sh [throughput|sse|memory|idle|soak|all] [options]
# bench/run.sh journey [--quick] [options]: the whole journey side by side (python -m bench.journey)
# PY picks the Python (default: .venv/bin/python, else python3); the project's own dependencies are installed
# into it if missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/python.sh"
# the signed-in rows run the cloud's own stages (auth, vkey, sandbox_router): the `cloud` extra
if ! "$PY" -c 'import aiohttp, uvloop, httptools, proxy_core, plugins.auth, plugins.sandbox_router' 2>/dev/null; then
  "$PY" -m pip install -e "$root[cloud]"
fi
cd "$root"
if [ "${1:-}" = journey ]; then shift; exec "$PY" -m bench.journey "$@"; fi
exec "$PY" -m bench "$@"
