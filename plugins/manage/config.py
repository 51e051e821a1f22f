"""The ``manage`` stage's settings (``[[pipeline]] stage = "manage"``)."""

from __future__ import annotations

from pydantic import Field, field_validator

from proxy_core import StageConfig


class SandboxCommands(StageConfig):
    """Shell commands Manage runs inside a sandbox (the template's pm2 apps by default)."""

    restart_app: str = 'cd "${SANDBOX_HOME:-/home/user}" && ./pm2.sh restart shmastra'
    restart_healer: str = 'cd "${SANDBOX_HOME:-/home/user}" && ./pm2.sh restart healer'
    logs: str = (
        'cd "${SANDBOX_HOME:-/home/user}"; ./pm2.sh logs --nostream --lines 200 2>/dev/null '
        "|| tail -n 200 .sandbox.log 2>/dev/null || true"
    )


class RolloutConfig(StageConfig):
    """How a sandbox is updated to the template's version (see :mod:`plugins.manage.updater`)."""

    source: str = "app"
    """The template's folder copied over ``$SANDBOX_HOME/shmastra`` (``node_modules``, ``.env`` kept)."""
    install: str = 'cd "${SANDBOX_HOME:-/home/user}/shmastra" && npm install --no-audit --no-fund'
    install_timeout: float = Field(600.0, gt=0)
    health_timeout: float = Field(120.0, gt=0)
    """How long the restarted app has to answer ``/health``."""
    tick: float = Field(1.0, gt=0)
    """Seconds between the leader's looks at running rollouts."""


class ManageConfig(StageConfig):
    path_prefix: str = "/manage"
    """Where the pages (``<prefix>``) and the JSON API (``<prefix>/api``) live."""
    audit_limit: int = Field(500, ge=1, le=100_000)
    """The most audit entries a view or export shows (newest first)."""
    rollout_concurrency: int = Field(5, ge=1, le=100)
    """How many sandboxes an update rollout works on at once."""
    live_interval: float = Field(1.0, gt=0)
    """Seconds between checks for changes the sandbox list streams to open pages."""
    provider_list_seconds: float = Field(10.0, ge=0)
    """How long the provider's own sandbox list is reused (E2B's list calls are rate-limited)."""
    command_timeout: float = Field(60.0, gt=0, le=600)
    """Longest an admin's command in a sandbox may run."""
    logs_max_chars: int = Field(20_000, ge=1000)
    commands: SandboxCommands = Field(default_factory=SandboxCommands)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)

    @field_validator("path_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value.startswith("/") or value.endswith("/") or len(value) < 2:
            raise ValueError("must start with '/' and not end with one, e.g. '/manage'")
        return value
