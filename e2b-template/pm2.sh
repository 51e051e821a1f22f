#!/usr/bin/env bash
# Runs pm2 against this sandbox's pm2-runtime (same PM2_HOME and pm2 as start.sh), e.g. the cloud's
# "retry": `$SANDBOX_HOME/pm2.sh restart healer`; or `pm2.sh jlist`, `pm2.sh restart shmastra`.
# When start.sh is not running it refuses (exit 3) rather than let pm2 spawn a daemon of its own.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
if ! pm2_runtime_pid > /dev/null; then
  echo "pm2.sh: this sandbox is not running (start.sh)" >&2
  exit 3
fi
exec pm2 "$@"
