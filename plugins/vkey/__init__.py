"""The virtual-key LLM gateway: sandboxes hold ``vk_<userId>_<hex>`` keys, the team's real keys never
leave the proxy, and every request's token usage and spend is recorded in ``usage``.

Public API (for the sandbox router and the Manage UI):

* :class:`VKeyStage` — the ``vkey`` stage (``/api/gateway/<provider>/<rest>``).
* :class:`KeyService` / :func:`key_service` — issue / rotate / revoke / disable / list keys;
  :class:`IssuedKey` carries the key itself, once.
* :func:`check_key` — whose usable key a presented ``vk_...`` is (the healer's bearer token).
* :func:`monthly_budget` — the gateway's default monthly budget per user in USD (0: none).
* :func:`gateway_activity` — the per-user :class:`Activity` of an app's gateway (listen for batches).
* :class:`UsageReports` — who spent what: per key (last use, this month) and grouped by day,
  provider or model.
"""

from aiohttp import web

from plugins.auth import UserRef  # what names a user here, as in auth
from proxy_core import find_stage

from .activity import Activity
from .cache import KEY_CACHE, KeyCache
from .keys import KeyLimits, KeyRecord, KeyRejected, display_prefix
from .ledger import USAGE_WRITER, UsageRow
from .lifecycle import IssuedKey, KeyExists, KeyListing, KeyService, key_service
from .reports import KeyUsage, UsageLine, UsageReports
from .stage import VKeyStage


async def check_key(app: web.Application, key: str) -> KeyRecord:
    """The record of ``key`` if it may be used now, checked as the gateway checks it (same cache).

    Raises :class:`KeyRejected` for an unknown, revoked, expired or disabled key, ``LookupError`` when
    the app has no ``vkey`` stage, and :class:`~proxy_core.db.StoreError` when the store cannot answer."""
    return await find_stage(app, VKeyStage).keys.check(key)


def monthly_budget(app: web.Application) -> float:
    """The default monthly budget per user in USD of the app's ``vkey`` stage (0: none, or no stage)."""
    try:
        return find_stage(app, VKeyStage).config.limits.monthly_budget_usd
    except LookupError:
        return 0.0


def gateway_activity(app: web.Application) -> Activity:
    """The :class:`Activity` of the app's ``vkey`` stage (raises LookupError when it has none)."""
    return find_stage(app, VKeyStage).activity


__all__ = [
    "KEY_CACHE",
    "USAGE_WRITER",
    "Activity",
    "IssuedKey",
    "KeyCache",
    "KeyExists",
    "KeyLimits",
    "KeyListing",
    "KeyRecord",
    "KeyRejected",
    "KeyService",
    "KeyUsage",
    "UsageLine",
    "UsageReports",
    "UsageRow",
    "UserRef",
    "VKeyStage",
    "check_key",
    "display_prefix",
    "gateway_activity",
    "key_service",
    "monthly_budget",
]
