"""Finding stage classes: by short name through the ``proxy_core.stages`` entry-point group, or by
``"package.module:Class"`` path for stages that are not installed as a distribution."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from .stage import Stage

ENTRY_POINT_GROUP = "proxy_core.stages"


class UnknownStageError(LookupError):
    """The name matched no installed stage; the message lists the installed ones."""


def installed_stages() -> dict[str, str]:
    """Short name → ``module:attr`` of every stage installed in this environment."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_stage_class(name: str) -> type[Stage[Any]]:
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            target = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise UnknownStageError(f"cannot load stage '{name}': {exc}") from None
    else:
        matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        if not matches:
            known = ", ".join(sorted(installed_stages())) or "none"
            raise UnknownStageError(
                f"unknown stage '{name}'; installed stages: {known} (or give a 'package.module:Class' path)"
            )
        try:
            target = matches[0].load()
        except ImportError as exc:
            raise UnknownStageError(
                f"stage '{name}' is installed but cannot be loaded: {exc} "
                "(is the extra that brings its dependencies installed?)"
            ) from None
    if not (isinstance(target, type) and issubclass(target, Stage)):
        raise UnknownStageError(f"'{name}' is not a proxy_core Stage subclass")
    if ":" not in name and target.name != name:
        # the entry point's name and the class's ``name`` are one fact said twice: they must agree
        raise UnknownStageError(
            f"the stage installed as '{name}' ({target.__module__}:{target.__qualname__}) "
            f"calls itself '{target.name}'; the entry point's name and the class's name must agree"
        )
    return target
