#!/usr/bin/env bash
# The shared gateway harness (shared/bench/gateway_anchor.sh) run against this project, in one command:
#   bench/gateway_anchor.sh        (GATEWAY_ANCHOR=path/to/gateway_anchor.sh for another copy; D=8s as there)
# Direct to the harness's stand-in provider (port 9201), through LiteLLM's proxy and through the vkey
# gateway (the production runner, the real store on a fresh SQLite file), each proxy alone on CPU 1.
# Sets up what the harness expects: /tmp/venv-anchor (aiohttp) and /tmp/venv-litellm (LiteLLM's proxy,
# the version bench.gateway pins, linked from $LITELLM_VENV, default /tmp/litellm, installed on first use).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/python.sh"
ANCHOR=${GATEWAY_ANCHOR:-$root/../shared/bench/gateway_anchor.sh}
[ -f "$ANCHOR" ] || { echo "gateway harness not found: $ANCHOR (set GATEWAY_ANCHOR)" >&2; exit 2; }
if ! "$PY" -c 'import aiohttp, uvloop, plugins.vkey' 2>/dev/null; then "$PY" -m pip install -e "$root[cloud]"; fi
cd "$root"
if [ ! -x /tmp/venv-anchor/bin/python ]; then
  python3 -m venv /tmp/venv-anchor && /tmp/venv-anchor/bin/pip install -q aiohttp
fi
"$PY" -c 'from bench.gateway.__main__ import ensure_litellm; ensure_litellm()'
if [ ! -e /tmp/venv-litellm ]; then
  ln -s "$("$PY" -c 'from bench.gateway.__main__ import LITELLM; print(LITELLM.parent.parent)')" /tmp/venv-litellm
fi
store=$(mktemp -d)
port=9210
vk=$("$PY" -c "import asyncio; from bench.gateway.servers import prepare_store; print(asyncio.run(prepare_store('sqlite:///$store/gateway.db')))")
taskset -c 1 "$PY" -m bench.gateway.servers gateway "$port" 9201 "sqlite:///$store/gateway.db" >/dev/null 2>&1 &
gateway=$!
trap 'kill $gateway 2>/dev/null; wait 2>/dev/null; rm -rf "$store"' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
bash "$ANCHOR" "http://127.0.0.1:$port/api/gateway/openai/chat/completions" "$vk"
