#!/usr/bin/env bash
# Starts everything a sandbox runs, in the FOREGROUND: pm2-runtime runs the app's dev server (`shmastra`)
# and the healer beside it, and owns every child process, so stopping this one process (SIGTERM/SIGINT)
# stops them all. The same script runs on E2B and under the local provider (see env.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
mkdir -p "$PM2_HOME" "$SANDBOX_HOME/logs"
cd "$here"
exec pm2-runtime start ecosystem.config.js
