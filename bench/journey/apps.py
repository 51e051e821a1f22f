"""The sandbox templates the journey benchmark starts through the ``local`` provider.

* :func:`fast_template`: the sandbox's app is nginx in one process (``master_process off``) answering
  ``/health`` and every other path with the throughput benchmark's ~100-byte body: a small, fast HTTP
  server, so the proxies in front of it are what is measured.
* :func:`idle_template`: the cheapest app that can hold an event stream: ``socat`` forks one ``sh``
  per connection; ``/health`` and small GETs are answered and closed, a path with ``events`` gets
  SSE headers, one comment line, then ``sleep`` until the connection goes. About 1 MB of private
  memory per listener and per held stream, so 500 sandboxes each holding a stream fit on a small machine
  (one Python app per sandbox would need ~10 GB).
"""

from __future__ import annotations

from pathlib import Path

from ..procs import SMALL_BODY

NGINX_START = r"""cd "$SANDBOX_HOME"
cat > nginx.conf <<CONF
daemon off; master_process off; worker_processes 1; pid $SANDBOX_HOME/nginx.pid; error_log stderr crit;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $SANDBOX_HOME/.tmp/body; proxy_temp_path $SANDBOX_HOME/.tmp/proxy;
  fastcgi_temp_path $SANDBOX_HOME/.tmp/fcgi; uwsgi_temp_path $SANDBOX_HOME/.tmp/uwsgi;
  scgi_temp_path $SANDBOX_HOME/.tmp/scgi;
  server {
    listen 127.0.0.1:$PORT;
    location = /health { default_type application/json; return 200 '{"success":true}'; }
    location / { return 200 "BODY\n"; }
  }
}
CONF
exec nginx -e stderr -p "$SANDBOX_HOME" -c "$SANDBOX_HOME/nginx.conf"
"""

SOCAT_START = """cd "$SANDBOX_HOME"
exec socat TCP-LISTEN:"$PORT",bind=127.0.0.1,reuseaddr,fork,backlog=128 EXEC:"sh handler.sh"
"""

HANDLER = r"""read -r method path version
while read -r line; do [ "${#line}" -le 1 ] && break; done
case "$path" in
  *events*)
    printf 'HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n'
    printf 'Connection: close\r\n\r\n: connected\n\n'
    exec sleep 86400 ;;
  *)
    printf 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 16\r\n'
    printf 'Connection: close\r\n\r\n{"success":true}' ;;
esac
"""


def _template(folder: Path, version: str, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True)
    (folder / "VERSION").write_text(version + "\n")
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def fast_template(folder: Path) -> Path:
    return _template(folder, "bench-nginx-1", {"start.sh": NGINX_START.replace("BODY", SMALL_BODY[:-1])})


def idle_template(folder: Path) -> Path:
    return _template(folder, "bench-socat-1", {"start.sh": SOCAT_START, "handler.sh": HANDLER})
