"""Writing log batches off the event loop: a thread of its own writes them, so a slow reader of the
log, a full disk or a closed stream never holds up serving.

The loop only appends a batch to a queue (one uncontended lock, no system call, no wake-up: the
thread looks for batches every 50 ms, or is woken when a megabyte waits). Memory is bounded: when more
than ``max_pending`` bytes already wait, a new batch is dropped, and so is a batch the stream refuses
(``ENOSPC``, ``EPIPE``, ``EBADF``...); ``on_drop`` hears how many lines were lost (for a metric), from
either thread but never from both at once. A batch is written whole (partial writes are continued),
so lines stay whole.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from typing import IO

_MAX_PENDING = 8 * 1024 * 1024
_POLL = 0.05  # how often the writer looks for batches; waking it per batch costs the loop a thread switch
_WAKE_AT = 1024 * 1024  # ...unless this much waits


class BackgroundWriter:
    """Writes byte batches to ``target`` (a file descriptor, or a binary stream without one) in order."""

    def __init__(
        self,
        target: int | IO[bytes],
        *,
        max_pending: int = _MAX_PENDING,
        on_drop: Callable[[int], None] | None = None,
        lock: threading.RLock | None = None,
    ) -> None:
        """``lock``: held while a batch is written, by whatever else writes to ``target`` too (the
        application log's handler on stderr), so its lines and ours never interleave mid-line."""
        self._target = target
        self._lock = lock
        self._max_pending = max_pending
        self._on_drop = on_drop
        self._queue: deque[bytes] = deque()
        self._pending = 0  # bytes queued or being written
        self.dropped = 0
        """Lines lost so far."""
        self._closed = False
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, data: bytes) -> bool:
        """Queue ``data`` (whole lines); ``False`` when it was dropped because too much is waiting."""
        with self._ready:
            if self._closed or self._pending + len(data) > self._max_pending:
                self._drop(data)
                return False
            self._queue.append(data)
            self._pending += len(data)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
                self._thread.start()
            elif self._pending >= _WAKE_AT:
                self._ready.notify()
        return True

    def _drop(self, data: bytes) -> None:  # with the lock held
        lines = data.count(b"\n")
        self.dropped += lines
        if self._on_drop is not None:
            self._on_drop(lines)

    @property
    def pending(self) -> int:
        """Bytes queued or being written."""
        return self._pending

    def close(self, timeout: float = 1.0) -> None:
        """Write what is queued (waiting at most ``timeout`` seconds), then stop the thread."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait(_POLL)
                if not self._queue:
                    return
                data = self._queue.popleft()
            ok = self._write(data)
            with self._ready:
                self._pending -= len(data)
                if not ok:
                    self._drop(data)

    def _write(self, data: bytes) -> bool:
        if self._lock is None:
            return self._write_all(data)
        with self._lock:
            return self._write_all(data)

    def _write_all(self, data: bytes) -> bool:
        try:
            if isinstance(self._target, int):
                view = memoryview(data)
                while view:
                    view = view[os.write(self._target, view) :]
            else:
                self._target.write(data)
                self._target.flush()
        except (OSError, ValueError):  # full disk, closed pipe or descriptor, closed stream
            return False
        return True
