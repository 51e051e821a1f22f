"""The Manage UI and admin API: users and keys, admin tokens and the audit log, served under
``/manage`` (pages) and ``/manage/api`` (JSON) to admins only.

Public API:

* :class:`ManageStage` — the stage; :func:`manage_stage` finds it in an app.
* :class:`AuditLog` — record and read admin actions (``audit_log``), for other plugins' admin paths.
* :class:`AdminTokens` — admin API tokens (``admin_tokens``), as the CLI creates them.
"""

from aiohttp import web

from proxy_core import find_stage

from .audit import AuditEntry, AuditFilter, AuditLog
from .stage import ManageStage
from .tokens import AdminToken, AdminTokens, CreatedToken


def manage_stage(app: web.Application) -> ManageStage:
    """The app's ``manage`` stage."""
    return find_stage(app, ManageStage)


__all__ = [
    "AdminToken",
    "AdminTokens",
    "AuditEntry",
    "AuditFilter",
    "AuditLog",
    "CreatedToken",
    "ManageStage",
    "manage_stage",
]
