#!/usr/bin/env bash
# Starts everything a sandbox runs, in the FOREGROUND: pm2-runtime runs the app's dev server (`shmastra`)
# and the healer beside it, and owns every child process, so stopping this one process (SIGTERM/SIGINT)
# stops them all. The same script runs on E2B and under the local provider (see env.sh). A second start
# while one runs is refused (exit 1).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
if running="$(pm2_runtime_pid)"; then
  echo "start.sh: this sandbox already runs (pm2-runtime pid $running)" >&2
  exit 1
fi
mkdir -p "$PM2_HOME" "$SANDBOX_HOME/logs"
cd "$here"
exec pm2-runtime start ecosystem.config.js
