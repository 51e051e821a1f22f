"""Routes for everything under a path prefix, matched without a regular expression.

A stage that serves a whole subtree (the LLM gateway under ``/api/gateway/``) and reads the rest of
the path itself needs no ``{tail:.*}`` pattern: aiohttp would run the pattern and decode the tail into
``match_info`` on every request. ``prefix_route`` matches with one ``str.startswith``::

    def routes(self) -> Sequence[web.AbstractRouteDef]:
        return [prefix_route("/api/gateway", self.serve)]
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.web_urldispatcher import _InfoDict
from yarl import URL

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class PathPrefix(web.Resource):
    """Every path under ``prefix`` (``/api/gateway`` matches ``/api/gateway/...``; ``/`` matches all).
    aiohttp tries a path's own resources before its parents', so longer prefixes win."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix.rstrip("/")
        self._under = self.prefix + "/"

    @property
    def canonical(self) -> str:
        return self.prefix or "/"

    def _match(self, path: str) -> dict[str, str] | None:
        return {} if path.startswith(self._under) else None

    def raw_match(self, path: str) -> bool:
        return False  # never reused for a route added later (aiohttp asks before making a resource)

    def add_prefix(self, prefix: str) -> None:
        """Mounted with a sub-application at ``prefix``: the subtree moves under it."""
        self.prefix = prefix + self.prefix
        self._under = self.prefix + "/"

    def get_info(self) -> _InfoDict:
        return {"prefix": self._under}

    def url_for(self) -> URL:  # type: ignore[override]  # aiohttp's own resources narrow it too
        return URL(self._under)


class PrefixRouteDef(web.AbstractRouteDef):
    """A route definition (for :meth:`Stage.routes`) answering every method under ``prefix``."""

    def __init__(self, prefix: str, handler: Handler) -> None:
        self.prefix, self.handler = prefix, handler

    def register(self, router: web.UrlDispatcher) -> list[web.AbstractRoute]:
        resource = PathPrefix(self.prefix)
        router.register_resource(resource)
        return [resource.add_route("*", self.handler)]

    def __repr__(self) -> str:
        return f"<PrefixRouteDef * {self.prefix}/... -> {self.handler.__name__!r}>"


def prefix_route(prefix: str, handler: Handler) -> PrefixRouteDef:
    """Route every method of every path under ``prefix`` to ``handler``."""
    return PrefixRouteDef(prefix, handler)
