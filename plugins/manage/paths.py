"""What Manage's pages and API share about their paths: the routes of the actions both have (the
pages' forms and their JSON twins), the ids in them (a malformed one is 404, as an unknown one is)
and the sandbox actions a path may name."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web

SANDBOX_ACTIONS = frozenset({"resume", "pause", "restart-app", "rerun-healer", "reprovision", "delete"})


def path_id(request: web.Request, name: str) -> uuid.UUID:
    """The id in the path's ``{name}`` part; 404 when it is not one."""
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise web.HTTPNotFound(text="No such id.") from None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Twins(Protocol):
    """The handlers the pages and the API both have, each for its own kind of answer: every page
    action has its API twin at the same path under ``<prefix>/api``."""

    async def users(self, request: web.Request) -> web.StreamResponse: ...
    async def invite(self, request: web.Request) -> web.StreamResponse: ...
    async def set_role(self, request: web.Request) -> web.StreamResponse: ...
    async def disable(self, request: web.Request) -> web.StreamResponse: ...
    async def enable(self, request: web.Request) -> web.StreamResponse: ...
    async def sign_out(self, request: web.Request) -> web.StreamResponse: ...
    async def rotate_key(self, request: web.Request) -> web.StreamResponse: ...
    async def revoke_keys(self, request: web.Request) -> web.StreamResponse: ...
    async def audit(self, request: web.Request) -> web.StreamResponse: ...
    async def usage(self, request: web.Request) -> web.StreamResponse: ...
    async def tokens(self, request: web.Request) -> web.StreamResponse: ...
    async def create_token(self, request: web.Request) -> web.StreamResponse: ...
    async def revoke_token(self, request: web.Request) -> web.StreamResponse: ...
    async def sandboxes(self, request: web.Request) -> web.StreamResponse: ...
    async def run_command(self, request: web.Request) -> web.StreamResponse: ...
    async def roll_back(self, request: web.Request) -> web.StreamResponse: ...
    async def sandbox_action(self, request: web.Request) -> web.StreamResponse: ...
    async def updates(self, request: web.Request) -> web.StreamResponse: ...
    async def set_target(self, request: web.Request) -> web.StreamResponse: ...
    async def start_rollout(self, request: web.Request) -> web.StreamResponse: ...
    async def rollout(self, request: web.Request) -> web.StreamResponse: ...
    async def control_rollout(self, request: web.Request) -> web.StreamResponse: ...


def twin_routes(base: str, twins: Twins) -> list[tuple[str, str, Handler]]:
    """``(method, path, handler)`` of every action both have, under ``base``."""
    user, sandbox, rollout = f"{base}/users/{{user_id}}", f"{base}/sandboxes/{{user_id}}", f"{base}/rollouts"
    return [
        ("GET", f"{base}/users", twins.users),
        ("POST", f"{base}/users", twins.invite),
        ("POST", f"{user}/role", twins.set_role),
        ("POST", f"{user}/disable", twins.disable),
        ("POST", f"{user}/enable", twins.enable),
        ("POST", f"{user}/sign-out", twins.sign_out),
        ("POST", f"{user}/key/rotate", twins.rotate_key),
        ("POST", f"{user}/key/revoke", twins.revoke_keys),
        ("GET", f"{base}/audit", twins.audit),
        ("GET", f"{base}/usage", twins.usage),
        ("GET", f"{base}/tokens", twins.tokens),
        ("POST", f"{base}/tokens", twins.create_token),
        ("POST", f"{base}/tokens/{{token_id}}/revoke", twins.revoke_token),
        ("GET", f"{base}/sandboxes", twins.sandboxes),
        ("POST", f"{sandbox}/run", twins.run_command),
        ("POST", f"{sandbox}/rollback", twins.roll_back),
        ("POST", f"{sandbox}/{{action}}", twins.sandbox_action),
        ("GET", f"{base}/updates", twins.updates),
        ("POST", f"{base}/updates/target", twins.set_target),
        ("POST", rollout, twins.start_rollout),
        ("GET", f"{rollout}/{{rollout_id}}", twins.rollout),
        ("POST", f"{rollout}/{{rollout_id}}/{{command}}", twins.control_rollout),
    ]
