"""The price table: tokens → USD, matching a response's model to the longest configured prefix
(``gpt-4o-mini-2024-07-18`` is priced as ``gpt-4o-mini``, not as ``gpt-4o``)."""

from __future__ import annotations

from collections.abc import Mapping

from .config import PriceConfig
from .usage import Usage

_PER_TOKEN = 1e-6


class PriceTable:
    def __init__(self, prices: Mapping[str, PriceConfig]) -> None:
        self._prices = dict(prices)
        self._by_length = sorted(self._prices, key=len, reverse=True)
        self._resolved: dict[str, PriceConfig | None] = {}

    def price_of(self, model: str) -> PriceConfig | None:
        model = model.removeprefix("models/")
        if model in self._resolved:
            return self._resolved[model]
        found = next((self._prices[name] for name in self._by_length if model.startswith(name)), None)
        if len(self._resolved) < 4096:
            self._resolved[model] = found
        return found

    def cost(self, usage: Usage) -> float | None:
        """USD for ``usage``; ``None`` when its model has no price (a tool call, an unknown model)."""
        price = self.price_of(usage.model)
        if price is None:
            return None
        cached = price.input if price.cached_input is None else price.cached_input
        write = price.input if price.cache_write is None else price.cache_write
        fresh = max(usage.input_tokens - usage.cached_tokens - usage.cache_write_tokens, 0)
        total = (
            fresh * price.input
            + usage.cached_tokens * cached
            + usage.cache_write_tokens * write
            + usage.output_tokens * price.output
        )
        return total * _PER_TOKEN
