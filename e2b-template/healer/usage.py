"""Memory and CPU of the app's whole process tree, from /proc (pm2's own figures cover only the process
it started, here `npm`, not the dev server below it)."""

from __future__ import annotations

import os
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    found: list[int] = []
    pending = [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                pending.extend(int(child) for child in task.read_text().split())
            except (OSError, ValueError):
                continue
    return found


def usage(pid: int) -> tuple[int, float]:
    """(resident bytes, CPU seconds used so far) of ``pid``'s process tree."""
    memory = 0
    cpu = 0.0
    for member in tree(pid):
        try:
            resident = int(Path(f"/proc/{member}/statm").read_text().split()[1])
            stat = Path(f"/proc/{member}/stat").read_text()
        except (OSError, ValueError, IndexError):
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (name) "
        memory += resident * PAGE
        cpu += (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime
    return memory, cpu
