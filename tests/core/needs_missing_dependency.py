"""A plugin module whose optional dependency is not installed (for the registry and CLI tests)."""

import surely_not_installed_anywhere  # noqa: F401


def register(commands: object, config_option: object) -> None:
    raise AssertionError("never reached: the import above fails")
