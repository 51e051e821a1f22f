"""The ``manage`` stage's settings (``[[pipeline]] stage = "manage"``)."""

from __future__ import annotations

from pydantic import Field, field_validator

from proxy_core import StageConfig


class ManageConfig(StageConfig):
    path_prefix: str = "/manage"
    """Where the pages (``<prefix>``) and the JSON API (``<prefix>/api``) live."""
    audit_limit: int = Field(500, ge=1, le=100_000)
    """The most audit entries a view or export shows (newest first)."""

    @field_validator("path_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not value.startswith("/") or value.endswith("/") or len(value) < 2:
            raise ValueError("must start with '/' and not end with one, e.g. '/manage'")
        return value
