#!/usr/bin/env bash
# The shared anchor harness (shared/bench/anchor_bench.sh) run against this project, in one command:
#   bench/anchor.sh            (ANCHOR=path/to/anchor_bench.sh to use another copy; D=10s C=50 as there)
# It uses bench's own set-up: $PY (default .venv/bin/python, else python3, the project installed into it
# if missing) and configurable-http-proxy in $CHP_DIR (default ~/.cache/shmastra-bench/chp, installed on
# first use), and serves the bare upstream stage on 127.0.0.1:9100 in front of the script's nginx on 9001.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/python.sh"
ANCHOR=${ANCHOR:-$root/../shared/bench/anchor_bench.sh}
[ -f "$ANCHOR" ] || { echo "anchor script not found: $ANCHOR (set ANCHOR)" >&2; exit 2; }
if ! "$PY" -c 'import aiohttp, uvloop, proxy_core' 2>/dev/null; then "$PY" -m pip install -e "$root"; fi
cd "$root"
export CHP_DIR=${CHP_DIR:-$("$PY" -c 'from bench.env import chp_dir; print(chp_dir())')}
"$PY" -c 'from bench.env import ensure_tools; ensure_tools()'
export VENV=${VENV:-$("$PY" -c 'import sys; print(sys.prefix)')} PY
conf=$(mktemp --suffix=.toml)
trap 'rm -f "$conf"' EXIT
printf '[server]\nport = 9100\nlog_level = "warning"\naccess_log = false\nmax_body_size = 0\n[[pipeline]]\nstage = "upstream"\nurl = "http://127.0.0.1:9001"\nidle_timeout = 3600\n' > "$conf"
bash "$ANCHOR" "cd '$root' && exec '$PY' -m proxy_core.cli serve -c '$conf'"
