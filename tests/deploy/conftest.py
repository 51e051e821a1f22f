"""These tests load the production config in-process with made-up environment values; loading a config
remembers such values process-wide as secrets to mask (``proxy_core.redact``). Each test starts and ends
with the masks it found, so ``example.com`` from a sample settings file is not masked in later tests."""

from __future__ import annotations

import pytest

from proxy_core import redact


@pytest.fixture(autouse=True)
def own_redaction_masks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redact, "_remembered", set(redact._remembered))
    monkeypatch.setattr(redact, "_pattern", redact._pattern)
