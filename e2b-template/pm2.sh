#!/usr/bin/env bash
# Runs pm2 against this sandbox's pm2-runtime (same PM2_HOME and pm2 as start.sh), e.g. the cloud's
# "retry": `$SANDBOX_HOME/pm2.sh restart healer`; or `pm2.sh jlist`, `pm2.sh restart shmastra`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec pm2 "$@"
