"""The database runtime: Postgres (asyncpg) and SQLite behind one small interface, per-owner
migrations, cross-replica locks and leader election, and batching writers for hot paths."""

from .base import Connection, Leadership, Row, Store, Transaction, lock_id
from .batch import ActivityWriter, BatchWriter
from .config import DatabaseConfig
from .database import DATABASE, Database, database
from .errors import (
    CheckViolation,
    ConstraintViolation,
    ForeignKeyViolation,
    MigrationError,
    NotFound,
    NotNullViolation,
    QueryError,
    StoreError,
    Unavailable,
    UniqueViolation,
)
from .migrations import Migration, OwnerStatus, Source
from .ratelimit import StoreRateLimiter

__all__ = [
    "DATABASE",
    "ActivityWriter",
    "BatchWriter",
    "CheckViolation",
    "Connection",
    "ConstraintViolation",
    "Database",
    "DatabaseConfig",
    "ForeignKeyViolation",
    "Leadership",
    "Migration",
    "MigrationError",
    "NotFound",
    "NotNullViolation",
    "OwnerStatus",
    "QueryError",
    "Row",
    "Source",
    "Store",
    "StoreError",
    "StoreRateLimiter",
    "Transaction",
    "Unavailable",
    "UniqueViolation",
    "database",
    "lock_id",
]
