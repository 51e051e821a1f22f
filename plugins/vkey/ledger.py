"""One usage row per gateway request, and where rows go (the store writes them in batches)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class UsageRow:
    at: datetime
    user_id: str
    key_id: str
    provider: str
    model: str
    status: int  # the upstream's status; 499 when the client left before the answer ended
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    cost_usd: float | None  # None: the model has no price in the table
    duration_ms: float
    reported: bool  # False: the provider reported no usage (an error, or a stream cut short)


class UsageSink(Protocol):
    def record(self, row: UsageRow) -> None:
        """Queue ``row``; must not block (the store flushes rows in batches)."""
        ...
