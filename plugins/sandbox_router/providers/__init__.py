"""Sandbox providers: the contract (``base``), ``local`` and ``e2b``, and :func:`build_provider`."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from .base import ProviderError, SandboxProvider

if TYPE_CHECKING:
    from ..config import SandboxRouterConfig


def build_provider(config: SandboxRouterConfig, base: Path) -> SandboxProvider:
    """The provider ``config.provider`` names, built from its own table (``[pipeline.local]`` or
    ``[pipeline.e2b]``); relative paths are taken from ``base`` (the config file's folder). The
    ``e2b`` module exposes ``build(settings) -> SandboxProvider``."""
    if config.provider == "local":
        from .local import LocalProvider

        local = config.local
        return LocalProvider(
            base / local.root,
            base / config.template_dir,
            base / local.cache_dir,
            bwrap={"auto": None, "always": True, "never": False}[local.bwrap],
            hidden_paths=[base / path for path in local.hidden_paths],
            stop_grace=local.stop_grace,
        )
    try:
        module = importlib.import_module(f"{__name__}.e2b")
    except ImportError as exc:
        raise ProviderError(f"the {config.provider!r} provider is not available: {exc}") from exc
    provider: SandboxProvider = module.build(config.e2b)
    return provider
