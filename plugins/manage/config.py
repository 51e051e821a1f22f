"""The ``manage`` stage's settings (``[[pipeline]] stage = "manage"``)."""

from __future__ import annotations

from pydantic import field_validator

from proxy_core import StageConfig


class ManageConfig(StageConfig):
    path_prefix: str = "/manage"
    """Where the pages (``<prefix>``) and the JSON API (``<prefix>/api``) live."""

    @field_validator("path_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value.startswith("/") or value.endswith("/") or len(value) < 2:
            raise ValueError("must start with '/' and not end with one, e.g. '/manage'")
        return value
