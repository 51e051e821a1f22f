"""Sandbox providers: the contract (``base``), ``local`` and ``e2b``, and :func:`build_provider`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import SandboxProvider

if TYPE_CHECKING:
    from ..config import SandboxRouterConfig


def build_provider(config: SandboxRouterConfig) -> SandboxProvider:
    """The provider ``config.provider`` names, built from its own table (``[pipeline.local]`` or
    ``[pipeline.e2b]``). Raises
    ``ValueError`` for settings that cannot work (reported as a config error naming the table)."""
    if config.provider == "e2b":
        from .e2b import E2BProvider

        return E2BProvider(config.e2b)
    from .local import LocalProvider

    local = config.local
    return LocalProvider(
        local.root,
        config.template_dir,
        local.cache_dir,
        bwrap={"auto": None, "always": True, "never": False}[local.bwrap],
        hidden_paths=local.hidden_paths,
        stop_grace=local.stop_grace,
        freeze=local.pause == "freeze",
        frozen_limit=local.frozen_limit,
        spares=local.spares,
    )
