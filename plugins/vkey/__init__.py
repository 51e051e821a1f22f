"""The virtual-key LLM gateway: sandboxes hold ``vk_<userId>_<hex>`` keys, the team's real keys never
leave the proxy, and every request's token usage and spend is recorded.

Public API (for the sandbox router and the Manage UI):

* :class:`VKeyStage` — the ``vkey`` stage (``/api/gateway/<provider>/<rest>``).
* :class:`KeyService` — issue / rotate / revoke / disable / list keys; :class:`IssuedKey` carries
  the key itself, once.
* :func:`gateway_activity` — the per-user :class:`Activity` of an app's gateway (listen for batches).
* :class:`GatewayStore` (database) and :class:`MemoryStore` (no database) behind the stage.
"""

from .activity import Activity, gateway_activity
from .keys import KeyRecord, KeyRejected, KeyStore, display_prefix
from .lifecycle import IssuedKey, KeyExists, KeyListing, KeyService, UnknownUser
from .memory import MemoryStore
from .stage import STORE, VKeyStage
from .store import GatewayStore
from .usage import Usage

__all__ = [
    "STORE",
    "Activity",
    "GatewayStore",
    "IssuedKey",
    "KeyExists",
    "KeyListing",
    "KeyRecord",
    "KeyRejected",
    "KeyService",
    "KeyStore",
    "MemoryStore",
    "UnknownUser",
    "Usage",
    "VKeyStage",
    "display_prefix",
    "gateway_activity",
]
