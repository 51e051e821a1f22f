"""The providers the gateway serves: built-in defaults merged with ``[pipeline.providers.*]``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from proxy_core import Upstream

from .config import ProviderConfig
from .errors import Shape

BUILTIN: dict[str, tuple[str, str, Shape]] = {
    "openai": ("https://api.openai.com/v1", "OPENAI_API_KEY", "openai"),
    "anthropic": ("https://api.anthropic.com/v1", "ANTHROPIC_API_KEY", "anthropic"),
    "gemini": ("https://generativelanguage.googleapis.com/v1beta", "GEMINI_API_KEY", "gemini"),
    "google": (
        "https://generativelanguage.googleapis.com/v1beta",
        "GOOGLE_GENERATIVE_AI_API_KEY",
        "gemini",
    ),
    "composio": ("https://backend.composio.dev", "COMPOSIO_API_KEY", "composio"),
}


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    upstream: Upstream
    shape: Shape
    key_env: str
    real_key: str | None  # None: the environment variable is not set, so the provider answers 503

    def __repr__(self) -> str:  # never print the real key
        return f"Provider({self.name!r}, {str(self.upstream)!r}, {self.shape!r}, key_env={self.key_env!r})"


def load_providers(
    configured: Mapping[str, ProviderConfig], env: Mapping[str, str] | None = None
) -> dict[str, Provider]:
    """Every provider by name. Raises ValueError for a new provider that lacks a url, key_env or shape."""
    env = os.environ if env is None else env
    providers = {}
    for name in {**BUILTIN, **configured}:
        url, key_env, shape = BUILTIN.get(name, (None, None, None))
        override = configured.get(name)
        if override is not None:
            url = str(override.url) if override.url is not None else url
            key_env = override.key_env or key_env
            shape = override.shape or shape
        if url is None or key_env is None or shape is None:
            raise ValueError(f"provider '{name}' needs url, key_env and shape")
        real = env.get(key_env) or None
        providers[name] = Provider(name, Upstream.from_url(url), shape, key_env, real)
    return providers
