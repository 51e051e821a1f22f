"""The page a browser sees while its sandbox starts: steps and a percentage streamed over SSE from
``/api/sandbox/events``; on ``ready`` it reloads the page it was asked for (now Studio), on
``failed`` it shows the reason, the healer's last word and a "Try again" button."""

from __future__ import annotations

import html

import orjson
from aiohttp import web

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Starting your sandbox · Shmastra Cloud</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;background:#0b0d10;color:#e8eaed;display:grid;place-items:center;
min-height:100vh;margin:0}
main{width:min(480px,90vw)}
h1{font-size:20px;font-weight:600}
.bar{height:8px;background:#22262b;border-radius:4px;overflow:hidden}
#fill{height:100%;background:#4f8cff;width:0;transition:width .3s}
#failure{display:none;background:#2a1517;border:1px solid #6b2b30;padding:12px;border-radius:6px}
button{margin-top:12px;font:inherit;padding:6px 14px;border-radius:6px;border:0;background:#4f8cff;color:#fff;
cursor:pointer}
.muted{color:#9aa0a6;font-size:13px}
</style></head>
<body><main>
<h1 id="title">Starting your sandbox</h1>
<div class="bar"><div id="fill"></div></div>
<p><span id="step">__MESSAGE__</span> <span id="percent" class="muted"></span></p>
<p id="healer" class="muted"></p>
<div id="failure"><strong>Your sandbox could not start.</strong>
<p id="reason"></p><button id="retry" type="button">Try again</button></div>
</main>
<script>
(function () {
  var csrf = __CSRF__;
  var source = null;
  function show(s) {
    document.getElementById("fill").style.width = (s.percent || 0) + "%";
    document.getElementById("step").textContent = s.message || "";
    document.getElementById("percent").textContent = s.percent ? "(" + s.percent + "%)" : "";
    document.getElementById("healer").textContent = s.healer_message ? "Healer: " + s.healer_message : "";
  }
  function fail(s) {
    show(s);
    document.getElementById("title").textContent = "Your sandbox needs attention";
    document.getElementById("reason").textContent = s.error || "The sandbox stopped.";
    document.getElementById("failure").style.display = "block";
    if (source) { source.close(); }
  }
  function listen() {
    source = new EventSource("/api/sandbox/events");
    source.addEventListener("progress", function (e) { show(JSON.parse(e.data)); });
    source.addEventListener("ready", function () { source.close(); window.location.reload(); });
    source.addEventListener("failed", function (e) { fail(JSON.parse(e.data)); });
  }
  document.getElementById("retry").addEventListener("click", function () {
    document.getElementById("failure").style.display = "none";
    document.getElementById("title").textContent = "Starting your sandbox";
    fetch("/api/sandbox/retry", {method: "POST", credentials: "same-origin",
                                 headers: {"X-CSRF-Token": csrf}})
      .then(function () { listen(); });
  });
  listen();
})();
</script>
</body></html>
"""


def progress_page(message: str, csrf_token: str, *, status: int = 200) -> web.Response:
    body = _PAGE.replace("__MESSAGE__", html.escape(message)).replace(
        "__CSRF__", orjson.dumps(csrf_token).decode().replace("<", "\\u003c")
    )
    return web.Response(
        text=body,
        status=status,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "Retry-After": "2"},
    )
