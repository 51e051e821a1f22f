"""The two cookies, both encrypted and authenticated (Fernet through aiohttp-session):

* the session cookie carries only the random session token (HttpOnly, SameSite=Lax, Path=/,
  Secure on https); the session itself is server-side;
* the flow cookie, scoped to the sign-in paths and valid ten minutes, carries what a sign-in in
  progress must remember: state, PKCE verifier, nonce, where to go afterwards, the pending email.
"""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web
from aiohttp_session import Session
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cryptography.fernet import Fernet

from proxy_core import Forwarder

FLOW_TTL = 600


class Cookies:
    def __init__(
        self,
        key: bytes,
        *,
        name: str,
        lifetime: float,
        secure: bool | None,
        flow_path: str,
        forwarder: Forwarder,
    ) -> None:
        fernet = Fernet(key)
        self.flow_name = name + "_flow"
        self._secure = secure
        self._forwarder = forwarder
        self._session = {
            flag: EncryptedCookieStorage(
                fernet,
                cookie_name=name,
                max_age=math.ceil(lifetime),
                secure=flag,
                httponly=True,
                samesite="Lax",
            )
            for flag in (False, True)
        }
        self._flow = {
            flag: EncryptedCookieStorage(
                fernet,
                cookie_name=self.flow_name,
                max_age=FLOW_TTL,
                path=flow_path,
                secure=flag,
                httponly=True,
                samesite="Lax",
            )
            for flag in (False, True)
        }

    def _https(self, request: web.Request) -> bool:
        if self._secure is not None:
            return self._secure
        return self._forwarder.client(request).proto == "https"

    async def session_token(self, request: web.Request) -> str | None:
        """The token from a valid session cookie; ``None`` when absent, tampered with or too old."""
        session = await self._session[False].load_session(request)
        token = session.get("t")
        return token if isinstance(token, str) else None

    async def set_session(self, request: web.Request, response: web.StreamResponse, token: str) -> None:
        storage = self._session[self._https(request)]
        session = Session(None, data=None, new=True, max_age=storage.max_age)
        session["t"] = token
        await storage.save_session(request, response, session)

    def clear_session(self, request: web.Request, response: web.StreamResponse) -> None:
        self._session[self._https(request)].save_cookie(response, "")

    async def flow(self, request: web.Request) -> dict[str, Any]:
        """The sign-in in progress; empty when there is none (or it expired, or was tampered with)."""
        session = await self._flow[False].load_session(request)
        return dict(session)

    async def set_flow(
        self, request: web.Request, response: web.StreamResponse, data: dict[str, Any]
    ) -> None:
        storage = self._flow[self._https(request)]
        session = Session(None, data=None, new=True, max_age=FLOW_TTL)
        session.update(data)
        await storage.save_session(request, response, session)

    def clear_flow(self, request: web.Request, response: web.StreamResponse) -> None:
        self._flow[self._https(request)].save_cookie(response, "")
