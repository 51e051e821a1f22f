"""Relative paths in ``proxy.toml`` mean "next to this file", wherever the command runs from.

A config is validated with the folder of its file in pydantic's validation context; a field typed
:data:`ConfigPath` (and the SQLite file in ``[database] url``) is resolved against it. Without a
context (a config object built in code) a path stays as given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, ValidationInfo

BASE_DIR = "base_dir"
"""The validation-context key holding the config file's folder."""


def base_dir(info: ValidationInfo) -> Path | None:
    context: Any = info.context
    if isinstance(context, dict) and isinstance(context.get(BASE_DIR), Path):
        found: Path = context[BASE_DIR]
        return found
    return None


def _resolve(path: Path, info: ValidationInfo) -> Path:
    base = base_dir(info)
    path = path.expanduser()
    if base is None or path.is_absolute():
        return path
    return base / path


ConfigPath = Annotated[Path, AfterValidator(_resolve)]
"""A filesystem path; relative ones resolve against the config file's folder."""
