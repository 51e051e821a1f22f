"""The ``vkey`` stage's configuration (its ``[[pipeline]]`` table in ``proxy.toml``)::

[[pipeline]]
stage = "vkey"
[pipeline.providers.openai]          # the built-in providers need no table; this overrides one
url = "https://api.openai.com/v1"
key_env = "OPENAI_API_KEY"           # the environment variable holding the real key
[pipeline.limits]
requests_per_minute = 120
tokens_per_day = 2_000_000
monthly_budget_usd = 50
rate_limiter = "process"             # or "store": one requests-per-minute count for every replica
[pipeline.prices."gpt-4o-mini"]      # USD per million tokens; the longest matching model prefix wins
input = 0.15
output = 0.60
cached_input = 0.075
"""

from __future__ import annotations

from typing import Literal

from pydantic import AnyHttpUrl, Field

from proxy_core import StageConfig

from .errors import Shape


class ProviderConfig(StageConfig):
    """One provider. For the built-in names every key has a default."""

    url: AnyHttpUrl | None = None
    key_env: str | None = None
    shape: Shape | None = None
    refused_headers: list[str] | None = None  # a request carrying one is refused (a second credential)
    stripped_headers: list[str] | None = None  # removed before forwarding (account or project selectors)
    rewrites_urls: bool | None = None  # URLs on the provider's host in its answers point at the gateway


class PriceConfig(StageConfig):
    """USD per million tokens. Cache reads cost ``cached_input`` (default: ``input``), cache writes
    ``cache_write`` (default: ``input``)."""

    input: float = Field(0.0, ge=0)
    output: float = Field(0.0, ge=0)
    cached_input: float | None = Field(None, ge=0)
    cache_write: float | None = Field(None, ge=0)


class LimitsConfig(StageConfig):
    """Per-user limits; 0 means unlimited.

    ``rate_limiter`` says where requests per minute are counted: ``"process"`` (each worker and
    replica on its own, so N of them allow up to N times the limit; free) or ``"store"`` (one count
    for all of them, at the cost of one short transaction per request). The default is
    ``"process"``: the limit only paces a teammate's agent, the money is guarded by the day's
    tokens and the month's budget, which are summed in the store either way."""

    requests_per_minute: int = Field(0, ge=0)
    tokens_per_day: int = Field(0, ge=0)
    monthly_budget_usd: float = Field(0.0, ge=0)
    rate_limiter: Literal["process", "store"] = "process"


class VKeyConfig(StageConfig):
    path_prefix: str = Field("/api/gateway", pattern=r"^/[^?#]*[^/?#]$")
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    prices: dict[str, PriceConfig] = Field(default_factory=dict)
    limits: LimitsConfig = LimitsConfig()
    key_cache_seconds: float = Field(5.0, ge=0)
    spend_refresh_seconds: float = Field(5.0, gt=0)
    activity_flush_seconds: float = Field(1.0, gt=0)
    connect_timeout: float = Field(10.0, gt=0)
    read_timeout: float = Field(300.0, gt=0)
    idle_timeout: float | None = Field(300.0, gt=0)
