"""Requests in flight to sandboxes, per user: the per-user cap, activity for users whose WebSockets or
event streams stay open, and cutting every open stream of a user who was signed out or disabled."""

from __future__ import annotations

import asyncio
import uuid

from aiohttp import web


class Flight:
    """One request in flight (compared by identity; a plain class: one is made per request)."""

    __slots__ = ("request", "session_id", "task", "user_id")

    def __init__(
        self, user_id: uuid.UUID, session_id: str, request: web.Request, task: asyncio.Task[object] | None
    ) -> None:
        self.user_id = user_id
        self.session_id = session_id
        self.request = request
        self.task = task


class InFlight:
    def __init__(self, per_user_cap: int) -> None:
        self.cap = per_user_cap
        self._by_user: dict[uuid.UUID, set[Flight]] = {}

    def enter(self, user_id: uuid.UUID, session_id: str, request: web.Request) -> Flight | None:
        """Register a request; ``None`` when the user is at the cap (answer 429)."""
        flights = self._by_user.get(user_id)
        if flights is None:
            flights = self._by_user[user_id] = set()
        elif len(flights) >= self.cap:
            return None
        flight = Flight(user_id, session_id, request, asyncio.current_task())
        flights.add(flight)
        return flight

    def leave(self, flight: Flight) -> None:
        flights = self._by_user.get(flight.user_id)
        if flights is not None:
            flights.discard(flight)
            if not flights:
                del self._by_user[flight.user_id]

    def users(self) -> list[uuid.UUID]:
        return list(self._by_user)

    def sessions(self) -> dict[str, uuid.UUID]:
        return {f.session_id: f.user_id for flights in self._by_user.values() for f in flights}

    def count(self, user_id: uuid.UUID) -> int:
        return len(self._by_user.get(user_id, ()))

    def cut(self, *, user_id: uuid.UUID | None = None, session_id: str | None = None) -> int:
        """End every request of ``user_id`` (or of one session): the handler is cancelled (which
        closes the upstream side) and the client's connection is closed. The number cut."""
        cut = 0
        for flights in list(self._by_user.values()):
            for flight in list(flights):
                if flight.user_id == user_id or flight.session_id == session_id:
                    if flight.task is not None:
                        flight.task.cancel()
                    transport = flight.request.transport
                    if transport is not None:
                        transport.close()
                    cut += 1
        return cut
