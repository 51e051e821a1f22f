"""Domain errors of the store: what callers catch instead of driver exceptions.

Messages are meant for people ("email already exists"). Constraint names follow one convention on
both backends, ``<table>_<field>_key`` for unique constraints and ``<table>_<field>_check`` for
checks, which is how the field is recovered from a violation.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every error the database layer raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unavailable(StoreError):
    """The database cannot be reached (not yet, or not any more), or is too busy to answer."""


class QueryError(StoreError):
    """The statement itself is wrong (syntax, unknown table, wrong type): a bug, not bad input."""


class NotFound(StoreError):
    """The row the caller asked for does not exist (raised by repositories)."""


class ConstraintViolation(StoreError):
    """A write broke a constraint. ``table`` and ``field`` are filled in when the backend says."""

    def __init__(self, message: str, *, table: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.table, self.field = table, field


class UniqueViolation(ConstraintViolation):
    """A unique value already exists: ``"email already exists"``."""


class ForeignKeyViolation(ConstraintViolation):
    """A reference points at nothing, or a referenced row was about to be removed."""


class CheckViolation(ConstraintViolation):
    """A value is outside what a check constraint (or a repository) accepts."""


class NotNullViolation(ConstraintViolation):
    """A required value is missing."""


class MigrationError(StoreError):
    """A migration could not be found, ordered or applied."""


def field_of(constraint: str | None, table: str | None) -> str | None:
    """``users_email_key`` → ``email`` (given the table ``users``); ``None`` when it does not fit."""
    if not constraint:
        return None
    name = constraint
    if table and name.startswith(table + "_"):
        name = name[len(table) + 1 :]
    for suffix in ("_key", "_check", "_fkey", "_idx"):
        if name.endswith(suffix):
            return name[: -len(suffix)] or None
    return name
