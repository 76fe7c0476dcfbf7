"""The storage exception tree.

Every failure of the storage layer is one of these; no asyncpg exception escapes the
:class:`storage.database.Database` API. Callers at the boundary write
``raise translate(exc) from exc``.

.. code-block:: text

    StorageError                   sqlstate, retryable
    ├── DatabaseUnavailable        cannot connect, connection lost, pool closed, timeouts
    ├── UniqueViolation            constraint        (23505)
    ├── ForeignKeyViolation        constraint        (23503)
    ├── CheckViolation             constraint        (23514)
    ├── SerializationConflict      serialization failure, deadlock; retry the transaction
    └── MigrationError             a migration file or its run is wrong
        └── MigrationChecksumMismatch   an applied migration's file changed

``retryable`` says whether running the same work again can succeed without changing it.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

import asyncpg

__all__ = [
    "CheckViolation",
    "DatabaseUnavailable",
    "ForeignKeyViolation",
    "MigrationChecksumMismatch",
    "MigrationError",
    "SerializationConflict",
    "StorageError",
    "UniqueViolation",
    "translate",
]


class StorageError(Exception):
    """Base class of every storage failure.

    ``sqlstate`` is PostgreSQL's error code (SQLSTATE) when the server reported one.
    """

    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class DatabaseUnavailable(StorageError):
    """The database cannot be reached: no connection, a lost one, a closed pool, a timeout."""

    retryable = True


class _ConstraintViolation(StorageError):
    """A write broke an integrity constraint; ``constraint`` names it when known."""

    def __init__(
        self, message: str, *, sqlstate: str | None = None, constraint: str | None = None
    ) -> None:
        super().__init__(message, sqlstate=sqlstate)
        self.constraint = constraint


class UniqueViolation(_ConstraintViolation):
    """A unique or primary key constraint was violated (SQLSTATE 23505)."""


class ForeignKeyViolation(_ConstraintViolation):
    """A foreign key constraint was violated (SQLSTATE 23503)."""


class CheckViolation(_ConstraintViolation):
    """A check constraint was violated (SQLSTATE 23514)."""


class SerializationConflict(StorageError):
    """The transaction lost a serialization race or a deadlock (40001, 40P01).

    The whole transaction must be run again, from its first statement.
    """

    retryable = True


class MigrationError(StorageError):
    """A migration file is malformed or missing, or running it failed.

    ``migration`` is the file name concerned, when there is one.
    """

    def __init__(
        self, message: str, *, migration: str | None = None, sqlstate: str | None = None
    ) -> None:
        super().__init__(message, sqlstate=sqlstate)
        self.migration = migration


class MigrationChecksumMismatch(MigrationError):
    """An applied migration's file no longer has the content that was applied."""

    def __init__(self, migration: str, *, expected: str, found: str) -> None:
        super().__init__(
            f"migration {migration} was changed after it was applied: "
            f"applied sha256 {expected}, file now has sha256 {found}",
            migration=migration,
        )
        self.expected = expected
        self.found = found


# SQLSTATE classes and codes meaning the server is unreachable or refused to serve us
# (PostgreSQL manual, appendix A "PostgreSQL Error Codes").
_UNAVAILABLE_CLASSES = ("08",)  # connection exception
_UNAVAILABLE_CODES = frozenset(
    {
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now (starting up, recovering)
        "53300",  # too_many_connections
        "57014",  # query_canceled: statement_timeout
        "3D000",  # invalid_catalog_name: the database does not exist
        "28000",  # invalid_authorization_specification
        "28P01",  # invalid_password
    }
)
_SERIALIZATION_CODES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock


def translate(exc: BaseException) -> StorageError:
    """Map an asyncpg, OSError or timeout exception to the storage exception tree.

    A :class:`StorageError` is returned unchanged; anything unknown becomes a plain
    :class:`StorageError`. Use as ``raise translate(exc) from exc``.
    """
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, asyncpg.PostgresError):
        return _from_postgres(exc)
    # TimeoutError (asyncio.TimeoutError since 3.11) is an OSError; name it for clarity.
    if isinstance(exc, (asyncio.TimeoutError, OSError)):
        return DatabaseUnavailable(f"database unreachable: {_describe(exc)}")
    if isinstance(exc, asyncpg.InterfaceError) and _says_closed(str(exc)):
        return DatabaseUnavailable(f"database connection unusable: {exc}")
    return StorageError(f"database error: {_describe(exc)}")


def _from_postgres(exc: asyncpg.PostgresError) -> StorageError:
    sqlstate: str | None = getattr(exc, "sqlstate", None)
    constraint: str | None = getattr(exc, "constraint_name", None)
    message = str(exc)
    if sqlstate == "23505":
        return UniqueViolation(message, sqlstate=sqlstate, constraint=constraint)
    if sqlstate == "23503":
        return ForeignKeyViolation(message, sqlstate=sqlstate, constraint=constraint)
    if sqlstate == "23514":
        return CheckViolation(message, sqlstate=sqlstate, constraint=constraint)
    if sqlstate in _SERIALIZATION_CODES:
        return SerializationConflict(message, sqlstate=sqlstate)
    if sqlstate is not None and (
        sqlstate in _UNAVAILABLE_CODES or sqlstate[:2] in _UNAVAILABLE_CLASSES
    ):
        return DatabaseUnavailable(message, sqlstate=sqlstate)
    return StorageError(message, sqlstate=sqlstate)


def _says_closed(message: str) -> bool:
    # asyncpg reports a closed pool or connection only as InterfaceError text:
    # "pool is closed", "pool is closing", "connection is closed".
    return " is closed" in message or " is closing" in message


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
