"""The ``sandbox_router`` stage's configuration (its ``[[pipeline]]`` table in ``proxy.toml``). Relative
paths resolve against the config file's folder (``ConfigPath``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AnyHttpUrl, Field

from proxy_core import StageConfig
from proxy_core.paths import ConfigPath

from .providers.e2b import E2BConfig


class LocalConfig(StageConfig):
    """``[pipeline.local]``: sandboxes as local process groups in workspace folders."""

    root: ConfigPath = Field(Path("data/sandboxes"), validate_default=True)
    """One folder per sandbox (its workspace is ``<root>/<id>/home``)."""
    cache_dir: ConfigPath = Field(Path("data/template-cache"), validate_default=True)
    """Prepared template versions, shared read-only by every workspace."""
    bwrap: Literal["auto", "always", "never"] = "auto"
    """Run each sandbox under bubblewrap with only its workspace writable (``auto``: when installed)."""
    hidden_paths: list[ConfigPath] = Field(default_factory=lambda: [Path("data")], validate_default=True)
    """Folders a sandbox under bubblewrap cannot see (the store, the cookie secret)."""
    stop_grace: float = Field(5.0, gt=0)
    """Seconds between SIGTERM and SIGKILL of a sandbox's process group."""
    pause: Literal["freeze", "stop"] = "freeze"
    """How a sandbox is paused: ``freeze`` stops its processes where they are (SIGSTOP: no CPU, memory
    kept, so a resume is a SIGCONT, like E2B's memory snapshot; a frozen app still accepts connections,
    so it is frozen only once every worker's cached address has expired, ``route_cache_seconds`` after
    it is marked paused); ``stop`` ends them (memory freed, a resume starts the app from nothing: ~20 s
    or more for ``mastra dev``)."""
    frozen_limit: float = Field(3600.0, gt=0)
    """Seconds a frozen sandbox keeps its memory; past it, the next sweep stops it."""
    spares: int = Field(0, ge=0, le=16)
    """Sandboxes of the current template version kept started in advance, with nobody's environment
    (``mastra dev`` loaded and bundled, its server waiting): a new user's or a re-provisioned sandbox
    takes one and is up in the app server's own start (seconds) instead of a cold start. A new spare
    is started 10 s after one is taken (or after a create without one). Each holds a running app's
    memory. Needs a template whose app honours ``SHMASTRA_ENV_FILE`` (the bundled one does)."""


class HealerConfig(StageConfig):
    """``[pipeline.healer]``: how patient each sandbox's healer is, given to it as its ``HEALER_*``
    variables. A sandbox on a small or busy machine starts ``mastra dev`` slowly; a healer less patient
    than the machine restarts a healthy start over and over."""

    startup_grace: float = Field(60.0, gt=0)
    """Seconds after the app starts before failed health checks or a long build count as problems."""
    build_stuck: float = Field(20.0, gt=0)
    """Seconds a dev build may run (past ``startup_grace``) before the healer restarts the app."""

    def env(self) -> dict[str, str]:
        """The variables the healer reads these from."""
        return {
            "HEALER_STARTUP_GRACE": f"{self.startup_grace:g}",
            "HEALER_BUILD_STUCK_SECONDS": f"{self.build_stuck:g}",
        }


class SandboxRouterConfig(StageConfig):
    provider: Literal["local", "e2b"] = "local"
    template_dir: ConfigPath = Field(Path("e2b-template"), validate_default=True)
    """The template every local sandbox starts from (``start.sh``, ``VERSION``, ``app/``)."""
    cloud_url: AnyHttpUrl | None = None
    """The cloud as a sandbox reaches it (gateway, healer reports); default ``[server] public_url``,
    else ``http://127.0.0.1:<port>``."""
    studio_path: str = Field("/studio", pattern=r"^/[A-Za-z0-9_\-/]*[A-Za-z0-9_\-]$")
    api_prefix: str = Field("/api/mastra", pattern=r"^/[A-Za-z0-9_\-/]*[A-Za-z0-9_\-]$")
    idle_timeout: float = Field(600.0, gt=0)
    """Seconds without activity before a sandbox is paused."""
    extend_every: float = Field(60.0, gt=0)
    """At most one provider keep-alive per sandbox in this many seconds."""
    health_timeout: float = Field(180.0, gt=0)
    """Seconds a started sandbox gets to answer ``GET /health`` before its state is ``error``."""
    start_timeout: float = Field(600.0, gt=0)
    """Seconds a whole start may take (provider calls, waiting in its queue, health) before it is an
    ``error``: a hanging provider never leaves an endless spinner."""
    health_interval: float = Field(0.05, gt=0)
    """Seconds before the second health check of a starting sandbox; each later wait is 1.25 times
    the one before, up to ``health_interval_max`` (a quick resume is seen at once; a slow start is
    seen at most ``health_interval_max`` late, 50 ms on average: each check is one small request)."""
    health_interval_max: float = Field(0.1, gt=0)
    """Longest wait between health checks: what the polling can add to a slow start, at most."""
    max_running: int | None = Field(None, ge=1)
    """Sandboxes of this cloud running at once; starting one more first pauses the least recently
    used running one (none: no cap). Meant for the ``local`` provider, where they share the machine."""
    route_cache_seconds: float = Field(5.0, ge=0)
    """How long a worker trusts a running sandbox's address before reading the store again. A pause
    with ``[pipeline.local] pause = "freeze"`` marks the sandbox paused, lets it answer this long (plus
    0.5 s) for workers that still hold its address, then freezes it: a longer cache makes pauses of a
    sandbox used a moment ago (the CLI's, Manage's, a rollout's) take longer. One idle for longer than
    that (the idle sweep's) is frozen once the workers' activity records are in the store (three
    ``[database] batch_interval``)."""
    sweep_interval: float = Field(30.0, gt=0)
    """Seconds between the leader's idle sweeps and reconciliations."""
    stream_check_interval: float = Field(5.0, gt=0)
    """Seconds between checks that the owners of open streams are still signed in and enabled."""
    max_concurrent_starts: int = Field(10, ge=1)
    """Sandbox starts one replica runs at once; more are refused with 429 until one finishes."""
    max_requests_per_user: int = Field(256, ge=1)
    """In-flight requests one user may have on one replica (429 past it)."""
    inject_html: bool = True
    """Add the scripts stages offer (auth's cloud menu, this stage's keep-alive and "Download my
    project") to the sandbox's HTML pages (see ``proxy_core.inject``)."""
    forward_cookies: bool = False
    """The sandbox's app authenticates by the token the proxy adds; browser cookies (the cloud's
    session among them) are not forwarded unless this is set."""
    connect_timeout: float = Field(10.0, gt=0)
    read_timeout: float = Field(300.0, gt=0)
    idle_stream_timeout: float = Field(3600.0, gt=0)
    """Longest silence inside a streamed answer (Studio's event stream stays open)."""
    healer_restart_command: str = (
        'cd "${SANDBOX_HOME:-/home/user}" && '
        "(./pm2.sh restart healer || ./pm2.sh start ecosystem.config.js --only healer)"
    )
    """What "Try again" runs in a sandbox whose healer gave up (``broken``); when it fails the whole
    sandbox is restarted instead."""
    export_limit: float = Field(120.0, gt=0)
    """Seconds an export's archive command may take."""
    healer: HealerConfig = Field(default_factory=HealerConfig)
    local: LocalConfig = Field(default_factory=LocalConfig)
    e2b: E2BConfig = Field(default_factory=E2BConfig)
    """``[pipeline.e2b]``: the E2B account and template (see :class:`.providers.e2b.E2BConfig`)."""
