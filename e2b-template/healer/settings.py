"""The healer's settings, all from the environment the cloud gives the sandbox (intervals can be shortened
so tests run fast)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw else default
    except ValueError:
        return default


@dataclass(frozen=True)
class Settings:
    home: Path
    project: Path
    app_name: str
    app_log: Path
    port: int
    cloud_url: str
    virtual_key: str
    llm_base_url: str
    model: str
    pm2: str
    interval: float  # seconds between checks (two failed health checks are one interval apart)
    build_stuck: float  # a build with no end for this long is stuck
    startup_grace: float  # health failures right after a (re)start do not count for this long
    restart_wait: float  # how long a restart may take to answer /health
    stable: float  # a restart that held this long heals the next incident by restarting again
    max_attempts: int
    attempt_seconds: float
    attempt_tokens: int
    max_turns: int
    command_timeout: float
    memory_percent: float
    memory_limit_mb: float  # 0: the cgroup's limit
    cpu_percent: float
    cpu_checks: int

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        home = Path(env.get("SANDBOX_HOME", "/home/user"))
        cloud = env.get("SHMASTRA_CLOUD_URL", "").rstrip("/")
        base = (
            env.get("HEALER_LLM_BASE_URL")
            or env.get("OPENAI_BASE_URL")
            or (f"{cloud}/api/gateway/openai/v1" if cloud else "")
        )
        return cls(
            home=home,
            project=Path(env.get("HEALER_PROJECT_DIR", str(home / "shmastra"))),
            app_name=env.get("HEALER_APP_NAME", "shmastra"),
            app_log=Path(env.get("HEALER_APP_LOG", str(home / "logs" / "shmastra.log"))),
            port=int(_float("PORT", 4111)),
            cloud_url=cloud,
            virtual_key=env.get("SHMASTRA_VIRTUAL_KEY", ""),
            llm_base_url=base.rstrip("/"),
            model=env.get("HEALER_MODEL", "gpt-4o-mini"),
            pm2=env.get("HEALER_PM2", "pm2"),
            interval=_float("HEALER_INTERVAL", 10),
            build_stuck=_float("HEALER_BUILD_STUCK_SECONDS", 20),
            startup_grace=_float("HEALER_STARTUP_GRACE", 60),
            restart_wait=_float("HEALER_RESTART_WAIT", 90),
            stable=_float("HEALER_STABLE_SECONDS", 120),
            max_attempts=int(_float("HEALER_MAX_ATTEMPTS", 3)),
            attempt_seconds=_float("HEALER_ATTEMPT_SECONDS", 300),
            attempt_tokens=int(_float("HEALER_ATTEMPT_TOKENS", 60000)),
            max_turns=int(_float("HEALER_MAX_TURNS", 24)),
            command_timeout=_float("HEALER_COMMAND_TIMEOUT", 120),
            memory_percent=_float("HEALER_MEMORY_PERCENT", 90),
            memory_limit_mb=_float("HEALER_MEMORY_LIMIT_MB", 0),
            cpu_percent=_float("HEALER_CPU_PERCENT", 95),
            cpu_checks=int(_float("HEALER_CPU_CHECKS", 6)),
        )
