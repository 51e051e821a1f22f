# Sourced by start.sh and pm2.sh: the environment every sandbox process shares, the same on E2B
# (SANDBOX_HOME=/home/user, PORT=4111) and under the local provider (SANDBOX_HOME=<workspace>, PORT=<free>).
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export SANDBOX_HOME="${SANDBOX_HOME:-/home/user}"
export PORT="${PORT:-4111}"
export MASTRA_TELEMETRY_DISABLED=1
export TELEMETRY_DISABLED=true

# pm2's state (and its control sockets, which `pm2 jlist` / `pm2 restart healer` reach) is per sandbox;
# a Unix socket path must stay short, so a deep workspace gets a short folder of its own under /tmp.
if [ -z "${PM2_HOME:-}" ]; then
  PM2_HOME="$SANDBOX_HOME/.pm2"
  if [ "${#PM2_HOME}" -gt 80 ]; then
    PM2_HOME="/tmp/shmastra-pm2-$(printf '%s' "$SANDBOX_HOME" | sha1sum | cut -c1-16)"
  fi
fi
export PM2_HOME
export PATH="$here/runtime/node_modules/.bin:$PATH"

# A sandbox made from a snapshot with the app already started gets its own settings from this JSON
# file, written by the cloud after create (see sandbox-env.mjs); the app's server waits for it.
if [ -n "${SHMASTRA_ENV_FILE:-}" ]; then
  export NODE_OPTIONS="--import=$here/sandbox-env.mjs${NODE_OPTIONS:+ $NODE_OPTIONS}"
fi

# The pid of this sandbox's pm2-runtime if it is running (start.sh writes none of it: pm2 keeps
# $PM2_HOME/pm2.pid while it runs and removes it on a clean stop).
pm2_runtime_pid() {
  local pid
  pid="$(cat "$PM2_HOME/pm2.pid" 2>/dev/null)" || return 1
  [ -n "$pid" ] && grep -qa "pm2" "/proc/$pid/cmdline" 2>/dev/null && echo "$pid"
}
