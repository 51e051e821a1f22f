"""Per-key locks and leader election that hold across the processes of one machine: the SQLite
backend's ``user_lock`` and ``leadership`` (several ``workers`` share one SQLite file; a user's first
visit must provision once and one worker runs each periodic job).

Each key is hashed into one of :data:`SLOTS` bytes of a lock file beside the database, locked with a
POSIX byte-range lock (``fcntl.lockf``). Two keys may share a slot; they then merely wait for each
other. POSIX locks do not exclude within one process (and closing any descriptor of the file drops
them all), so one descriptor is kept open and an ``asyncio.Lock`` per slot orders this process's own
tasks first. The byte lock is tried without blocking and retried after a short sleep: the event loop
never waits in a system call, and a cancelled waiter leaves nothing behind (a thread blocked in
``lockf`` could not be called back). Leadership of a job is a byte after those, held without waiting
until its leader steps down or its process ends (the kernel drops a dead process's locks)."""

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
        self._leaders: dict[str, FileLeadership] = {}

    def open(self) -> None:
        """Open (creating it and its folder) the lock file; raises ``OSError``."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)

    def close(self) -> None:
        """Close the file, which drops every lock and lead this process holds on it."""
        self._leaders.clear()
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
            if _try_lock(fd, slot):
                return fd
            await asyncio.sleep(wait)
            wait = min(wait * 2, _RETRY_MOST)

    def leadership(self, name: str) -> FileLeadership:
        return FileLeadership(self, name)

    def lead(self, name: str, contender: FileLeadership) -> bool:
        """Whether ``contender`` leads ``name`` now, taking the lead when no one in any process has it."""
        holder = self._leaders.get(name)
        if holder is not None:
            return holder is contender
        if self._fd is None or not _try_lock(self._fd, _leader_byte(name)):
            return False
        self._leaders[name] = contender
        return True

    def step_down(self, name: str, contender: FileLeadership) -> None:
        if self._leaders.get(name) is not contender:
            return
        del self._leaders[name]
        byte = _leader_byte(name)
        if self._fd is not None and all(_leader_byte(other) != byte for other in self._leaders):
            fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, byte)  # unless another job here shares the byte


class FileLeadership:
    """One contender for leading the periodic job ``name`` (see ``Database.leadership``)."""

    def __init__(self, locks: FileKeyLocks, name: str) -> None:
        self._locks, self._name = locks, name

    async def is_leader(self) -> bool:
        return self._locks.lead(self._name, self)

    async def close(self) -> None:
        self._locks.step_down(self._name, self)


def _leader_byte(name: str) -> int:
    return SLOTS + slot_of(name)


def _try_lock(fd: int, byte: int) -> bool:
    """Lock ``byte`` for this process if no other process holds it."""
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, byte)
    except (BlockingIOError, PermissionError):  # held elsewhere (EAGAIN, or EACCES on some systems)
        return False
    return True
