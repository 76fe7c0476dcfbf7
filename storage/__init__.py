"""Storage: PostgreSQL access for the server.

:mod:`storage.database` holds the connection pool, :mod:`storage.migrate` the schema
migration runner, :mod:`storage.embedded` the embedded PostgreSQL used when no DSN is
configured, and :mod:`storage.errors` the exception tree every failure is mapped to.
This package imports nothing else of the project.
"""

from .database import Connection, Database, IsolationLevel, PoolSettings, PoolStats
from .embedded import EmbeddedPostgres
from .errors import (
    CheckViolation,
    DatabaseUnavailable,
    ForeignKeyViolation,
    MigrationChecksumMismatch,
    MigrationError,
    SerializationConflict,
    StorageError,
    UniqueViolation,
    translate,
)
from .migrate import MIGRATIONS_DIR, apply_migrations, pending_migrations

__all__ = [
    "MIGRATIONS_DIR",
    "CheckViolation",
    "Connection",
    "Database",
    "DatabaseUnavailable",
    "EmbeddedPostgres",
    "ForeignKeyViolation",
    "IsolationLevel",
    "MigrationChecksumMismatch",
    "MigrationError",
    "PoolSettings",
    "PoolStats",
    "SerializationConflict",
    "StorageError",
    "UniqueViolation",
    "apply_migrations",
    "pending_migrations",
    "translate",
]
