"""Per-key locks that hold across the processes of one machine: the SQLite backend's ``user_lock``
(several ``workers`` share one SQLite file, and a user's first visit must provision once).

Each key is hashed into one of :data:`SLOTS` bytes of a lock file beside the database, locked with a
POSIX byte-range lock (``fcntl.lockf``). Two keys may share a slot; they then merely wait for each
other. POSIX locks do not exclude within one process (and closing any descriptor of the file drops
them all), so one descriptor is kept open and an ``asyncio.Lock`` per slot orders this process's own
tasks first. The byte lock is tried without blocking and retried after a short sleep: the event loop
never waits in a system call, and a cancelled waiter leaves nothing behind (a thread blocked in
``lockf`` could not be called back)."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

SLOTS = 4096
"""Bytes of the lock file keys are hashed into: few enough to bound it, many enough that two users
rarely share a slot."""

_RETRY_FIRST, _RETRY_MOST = 0.005, 0.1
"""Seconds between attempts on a slot another process holds (doubling from the first to the most)."""


def slot_of(key: str) -> int:
    """The byte of the lock file that stands for ``key`` (the same in every process)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % SLOTS


class FileKeyLocks:
    """``async with locks.hold(key):`` — exclusive among every process using the same ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._slots: dict[int, tuple[asyncio.Lock, int]] = {}

    def open(self) -> None:
        """Open (creating it and its folder) the lock file; raises ``OSError``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        slot = slot_of(key)
        lock, users = self._slots.get(slot) or (asyncio.Lock(), 0)
        self._slots[slot] = (lock, users + 1)
        try:
            async with lock:
                fd = await self._take(slot)
                try:
                    yield
                finally:
                    fcntl.lockf(fd, fcntl.LOCK_UN, 1, slot)
        finally:
            lock, users = self._slots[slot]
            if users == 1:
                del self._slots[slot]
            else:
                self._slots[slot] = (lock, users - 1)

    async def _take(self, slot: int) -> int:
        """Lock byte ``slot`` of the file for this process, waiting while another process holds it."""
        wait = _RETRY_FIRST
        while True:
            fd = self._fd
            if fd is None:
                raise RuntimeError(f"the lock file {self.path} is not open")
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, slot)
                return fd
            except (BlockingIOError, PermissionError):  # held elsewhere (EAGAIN, or EACCES on some systems)
                await asyncio.sleep(wait)
                wait = min(wait * 2, _RETRY_MOST)
