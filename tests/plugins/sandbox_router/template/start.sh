#!/usr/bin/env bash
# The stand-in template's start script: like the real one it runs in the foreground until stopped.
# The fixture writes the Python that has aiohttp into .python (the sandbox's env names no venv).
set -e
cd "$SANDBOX_HOME"
exec "$(cat "$SANDBOX_HOME/.python")" "$SANDBOX_HOME/app.py"
