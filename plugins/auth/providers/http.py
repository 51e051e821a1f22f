"""A small JSON client for talking to identity providers without blocking the event loop."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson

from .base import ProviderUnavailable


class JsonClient:
    """One connection pool per provider, opened on first use (inside the running loop)."""

    def __init__(self, name: str, timeout: float) -> None:
        self.name = name
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, raise_for_status=False)
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        within: float | None = None,
    ) -> tuple[int, Any]:
        """``(status, parsed JSON or None)``. Network failures, timeouts and 5xx raise
        :class:`ProviderUnavailable`; 4xx are returned for the caller to interpret. Every call is
        bounded by the client's total timeout (connect, send, wait, read), or by ``within`` seconds."""
        try:
            async with self._client().request(
                method,
                url,
                data=orjson.dumps(json) if json is not None else form,
                headers={"Accept": "application/json", **(headers or {})}
                | ({"Content-Type": "application/json"} if json is not None else {}),
                timeout=aiohttp.ClientTimeout(total=within) if within is not None else self._timeout,
            ) as response:
                body = await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise ProviderUnavailable(f"{self.name} is unreachable ({type(exc).__name__})") from exc
        if status >= 500:
            raise ProviderUnavailable(f"{self.name} answered {status}")
        try:
            parsed = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            if status < 400:
                raise ProviderUnavailable(f"{self.name} answered with something other than JSON") from None
            parsed = None
        return status, parsed

    async def get(self, url: str, **kwargs: Any) -> Any:
        """The JSON of a GET that must succeed."""
        status, body = await self.request("GET", url, **kwargs)
        if status != 200:
            raise ProviderUnavailable(f"{self.name} answered {status} for {url}")
        return body

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
