"""The ``shmastra-cloud`` program: proxy_core's command line under Shmastra Cloud's name, with its
defaults (the embedded store in ``data/shmastra.db``). Everything else comes from the installed stages
and commands (``plugins``)."""

from __future__ import annotations

from collections.abc import Sequence

from proxy_core.cli import main as proxy_main

PROG = "shmastra-cloud"
DEFAULTS = {"database": {"url": "sqlite:///data/shmastra.db"}}
DESCRIPTION = "Shmastra Cloud: a hosted IDE for AI agents behind one streaming proxy."


def main(argv: Sequence[str] | None = None) -> int:
    return proxy_main(argv, prog=PROG, defaults=DEFAULTS, description=DESCRIPTION)


__all__ = ["DEFAULTS", "PROG", "main"]
