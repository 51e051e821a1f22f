"""proxy_core: a streaming aiohttp reverse proxy whose concerns are stages of a TOML-configured pipeline."""

from ._upstream import Origin
from ._websocket import WebSocketEnding, WebSocketSettings
from .app import CONFIG, FORWARDER, METRICS, STAGES, build_stages, create_app, find_stage, make_context
from .config import ConfigError, ProxyConfig, ServerConfig, StageConfig, StageSpec, load_config, parse_config
from .errors import error_response, wants_html
from .events import open_event_stream
from .exchange import ErrorRenderer, ResponseTap, Timeouts, Upstream, UpstreamError, UpstreamRequest
from .forward import CLIENT_ADDRESS, OUTCOME, Forwarder, Outcome
from .headers import ClientAddress, TrustedProxies
from .metrics import Counter, Gauge, Histogram, Metrics
from .prefix import prefix_route
from .registry import UnknownStageError, installed_stages, load_stage_class
from .stage import Next, Readiness, Stage, StageContext

__all__ = [
    "CLIENT_ADDRESS",
    "CONFIG",
    "FORWARDER",
    "METRICS",
    "OUTCOME",
    "STAGES",
    "ClientAddress",
    "ConfigError",
    "Counter",
    "ErrorRenderer",
    "Forwarder",
    "Gauge",
    "Histogram",
    "Metrics",
    "Next",
    "Origin",
    "Outcome",
    "ProxyConfig",
    "Readiness",
    "ResponseTap",
    "ServerConfig",
    "Stage",
    "StageConfig",
    "StageContext",
    "StageSpec",
    "Timeouts",
    "TrustedProxies",
    "UnknownStageError",
    "Upstream",
    "UpstreamError",
    "UpstreamRequest",
    "WebSocketEnding",
    "WebSocketSettings",
    "build_stages",
    "create_app",
    "error_response",
    "find_stage",
    "installed_stages",
    "load_config",
    "load_stage_class",
    "make_context",
    "open_event_stream",
    "parse_config",
    "prefix_route",
    "wants_html",
]
