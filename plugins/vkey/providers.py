"""The providers the gateway serves: built-in defaults merged with ``[pipeline.providers.*]``.

Each provider's table also declares the request headers a sandbox must not choose: a second
credential (``refused_headers``: the request is refused, since the sandbox holds only its virtual key
and anything else is a leak or a mistake worth hearing about) and selectors of the account or project
the call is billed to (``stripped_headers``: removed, since the team's account is the cloud's), and
whether URLs on the provider's own host in its answers are rewritten to the gateway
(``rewrites_urls``: Composio hands out MCP URLs the sandbox then calls with its key).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from proxy_core import Upstream

from .config import ProviderConfig
from .errors import Shape


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    url: str
    key_env: str
    shape: Shape
    refused_headers: tuple[str, ...] = ()
    stripped_headers: tuple[str, ...] = ()
    rewrites_urls: bool = False


_GOOGLE_STRIPPED = ("x-goog-user-project",)  # bills another Google Cloud project

BUILTIN: dict[str, ProviderSpec] = {
    "openai": ProviderSpec(
        "https://api.openai.com/v1",
        "OPENAI_API_KEY",
        "openai",
        stripped_headers=("openai-organization", "openai-project"),
    ),
    "anthropic": ProviderSpec("https://api.anthropic.com/v1", "ANTHROPIC_API_KEY", "anthropic"),
    "gemini": ProviderSpec(
        "https://generativelanguage.googleapis.com/v1beta",
        "GEMINI_API_KEY",
        "gemini",
        stripped_headers=_GOOGLE_STRIPPED,
    ),
    "google": ProviderSpec(
        "https://generativelanguage.googleapis.com/v1beta",
        "GOOGLE_GENERATIVE_AI_API_KEY",
        "gemini",
        stripped_headers=_GOOGLE_STRIPPED,
    ),
    "composio": ProviderSpec(
        "https://backend.composio.dev",
        "COMPOSIO_API_KEY",
        "composio",
        refused_headers=("x-user-api-key", "x-org-api-key"),
        stripped_headers=("x-org-id", "x-project-id"),
        rewrites_urls=True,
    ),
}


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    upstream: Upstream
    shape: Shape
    key_env: str
    real_key: str | None  # None: the environment variable is not set, so the provider answers 503
    refused_headers: tuple[str, ...] = ()  # lower case
    stripped_headers: frozenset[str] = frozenset()  # lower case: dropped as the request is built
    rewrites_urls: bool = False

    def __repr__(self) -> str:  # never print the real key
        return f"Provider({self.name!r}, {str(self.upstream)!r}, {self.shape!r}, key_env={self.key_env!r})"


def load_providers(
    configured: Mapping[str, ProviderConfig], env: Mapping[str, str] | None = None
) -> dict[str, Provider]:
    """Every provider by name. Raises ValueError for a new provider that lacks a url, key_env or shape."""
    env = os.environ if env is None else env
    providers = {}
    for name in {**BUILTIN, **configured}:
        spec = BUILTIN.get(name)
        url, key_env, shape = (spec.url, spec.key_env, spec.shape) if spec else (None, None, None)
        refused = spec.refused_headers if spec else ()
        stripped = spec.stripped_headers if spec else ()
        rewrites = spec.rewrites_urls if spec else False
        override = configured.get(name)
        if override is not None:
            url = str(override.url) if override.url is not None else url
            key_env = override.key_env or key_env
            shape = override.shape or shape
            refused = tuple(override.refused_headers) if override.refused_headers is not None else refused
            stripped = tuple(override.stripped_headers) if override.stripped_headers is not None else stripped
            rewrites = override.rewrites_urls if override.rewrites_urls is not None else rewrites
        if url is None or key_env is None or shape is None:
            raise ValueError(f"provider '{name}' needs url, key_env and shape")
        real = env.get(key_env) or None
        providers[name] = Provider(
            name,
            Upstream.from_url(url),
            shape,
            key_env,
            real,
            tuple(h.lower() for h in refused),
            frozenset(h.lower() for h in stripped),
            rewrites,
        )
    return providers
