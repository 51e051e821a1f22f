"""Each teammate's own sandbox: provisioned on first visit, proxied (HTTP, SSE, WebSocket), paused when
idle, resumed on demand.

Public API (for the Manage UI and other plugins):

* :class:`SandboxRouterStage` — the stage; :func:`sandbox_router` finds it in an app; its
  ``lifecycle`` (:class:`Lifecycle`) starts, pauses and kills sandboxes (:class:`TooManyStarts`: this
  replica's start slots are all taken).
* :class:`Sandbox` / :class:`Sandboxes` — a user's sandbox row (state, reason, healer status and
  message, activity) and the queries on it; ``Sandboxes.events`` is its state history and
  ``Sandboxes.running_seconds`` its running time over a period.
* :func:`export_project` — a project's ``.tar.gz``.
* :func:`reprovision_sandbox` — a new sandbox from the current template, carrying the user's files where
  the provider can (``SandboxProvider.keeps_files``); :class:`Reprovisioned` says what it did.
* :class:`SandboxProvider`, :class:`Handle`, :class:`CommandResult`, :class:`ProviderError` — the
  provider interface the stage's ``provider`` implements (commands, files, endpoint, packing files)
  and its errors.
"""

from aiohttp import web

from proxy_core import find_stage

from .export import export_project
from .lifecycle import Lifecycle, TooManyStarts
from .providers.base import CommandResult, Handle, ProviderError, SandboxProvider
from .reprovision import NoSandboxToReprovision, Reprovisioned, reprovision_sandbox
from .stage import SandboxRouterStage
from .store import HEALER_STATUSES, STATES, HealerStatus, Sandbox, Sandboxes, State


def sandbox_router(app: web.Application) -> SandboxRouterStage:
    """The app's ``sandbox_router`` stage."""
    return find_stage(app, SandboxRouterStage)


__all__ = [
    "HEALER_STATUSES",
    "STATES",
    "CommandResult",
    "Handle",
    "HealerStatus",
    "Lifecycle",
    "NoSandboxToReprovision",
    "ProviderError",
    "Reprovisioned",
    "Sandbox",
    "SandboxProvider",
    "SandboxRouterStage",
    "Sandboxes",
    "State",
    "TooManyStarts",
    "export_project",
    "reprovision_sandbox",
    "sandbox_router",
]
