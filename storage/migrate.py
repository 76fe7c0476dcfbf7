"""The schema migration runner.

Migrations are SQL files named ``NNNN_name.sql`` (four digits, then lower-case words
joined by ``_``), applied once each in numeric order. Each runs in its own transaction
together with its row in ``schema_migrations``, which records the sha256 of the file's
bytes: a failed migration leaves nothing of itself, and the earlier ones stay applied.

Several instances may start at once against one database: the run holds a PostgreSQL
advisory lock for its whole length, so they apply the migrations one after the other
and each migration exactly once. An applied migration whose file has changed, or whose
file is gone, stops the run before anything new is applied.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from .database import Connection, Database
from .errors import DatabaseUnavailable, MigrationChecksumMismatch, MigrationError, translate

__all__ = [
    "MIGRATIONS_DIR",
    "MIGRATION_LOCK_KEY",
    "Migration",
    "apply_migrations",
    "discover_migrations",
    "pending_migrations",
]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# pg_advisory_lock key of the migration run: the first 8 bytes of
# sha256(b"buildxpert-rtc schema migrations"), as a signed 64-bit integer. Fixed
# forever: every version of the server must take the same lock.
MIGRATION_LOCK_KEY = -8771977573337823993

_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str  # the file name, e.g. "0001_core.sql"
    sql: str
    checksum: str  # sha256 hex digest of the file's bytes


def discover_migrations(directory: Path | None = None) -> list[Migration]:
    """Read the migration files of ``directory``, in version order.

    Files not ending in ``.sql`` are ignored; a ``.sql`` file with a malformed name,
    two files with one version, or a file that is not UTF-8 raise :class:`MigrationError`.
    """
    directory = MIGRATIONS_DIR if directory is None else directory
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} does not exist")
    by_version: dict[int, Migration] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(
                f"migration file name {path.name!r} is not NNNN_name.sql "
                "(four digits, then lower-case letters, digits and underscores)",
                migration=path.name,
            )
        version = int(match.group(1))
        if version in by_version:
            raise MigrationError(
                f"migrations {by_version[version].name} and {path.name} share version {version}",
                migration=path.name,
            )
        by_version[version] = _read(path, version)
    return [by_version[version] for version in sorted(by_version)]


def _read(path: Path, version: int) -> Migration:
    data = path.read_bytes()
    try:
        sql = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MigrationError(
            f"migration {path.name} is not UTF-8: {exc}", migration=path.name
        ) from exc
    checksum = hashlib.sha256(data).hexdigest()
    return Migration(version=version, name=path.name, sql=sql, checksum=checksum)


async def apply_migrations(
    db: Database, directory: Path | None = None, *, timeout: float = 600.0
) -> list[str]:
    """Apply the migrations of ``directory`` not yet applied; return their file names.

    ``timeout`` bounds, in seconds, the wait for the migration lock and each migration's
    run (the pool's command timeout is meant for requests, not for schema changes).
    """
    migrations = discover_migrations(directory)
    async with db.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY, timeout=timeout)
        try:
            await conn.execute(_CREATE_TABLE, timeout=timeout)
            applied = await _applied(conn)
            _check_applied(migrations, applied)
            done: list[str] = []
            for migration in migrations:
                if migration.version not in applied:
                    await _apply(conn, migration, timeout)
                    done.append(migration.name)
            return done
        finally:
            # Releasing the connection to the pool resets the session, which releases
            # advisory locks too, so a failure here need not hide the run's own error.
            try:
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                pass


async def pending_migrations(db: Database, directory: Path | None = None) -> list[str]:
    """File names of the migrations not yet applied, in order. Takes no lock.

    Meant for readiness checks: it neither applies nor verifies checksums.
    """
    migrations = discover_migrations(directory)
    async with db.acquire() as conn:
        if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
            return [migration.name for migration in migrations]
        applied = await _applied(conn)
    return [migration.name for migration in migrations if migration.version not in applied]


async def _applied(conn: Connection) -> dict[int, tuple[str, str]]:
    rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
    return {row["version"]: (row["name"], row["checksum"]) for row in rows}


def _check_applied(migrations: list[Migration], applied: dict[int, tuple[str, str]]) -> None:
    files = {migration.version: migration for migration in migrations}
    for version, (name, checksum) in sorted(applied.items()):
        migration = files.get(version)
        if migration is None:
            raise MigrationError(
                f"migration {name} (version {version}) is applied but its file is missing",
                migration=name,
            )
        if migration.name != name:
            raise MigrationError(
                f"migration version {version} was applied as {name} "
                f"but its file is now {migration.name}",
                migration=migration.name,
            )
        if migration.checksum != checksum:
            raise MigrationChecksumMismatch(name, expected=checksum, found=migration.checksum)


async def _apply(conn: Connection, migration: Migration, timeout: float) -> None:
    try:
        async with conn.transaction():
            # No arguments: the simple query protocol, so a file may hold many statements.
            await conn.execute(migration.sql, timeout=timeout)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
                timeout=timeout,
            )
    except TimeoutError as exc:
        raise MigrationError(
            f"migration {migration.name} did not finish within {timeout} s",
            migration=migration.name,
        ) from exc
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        error = translate(exc)
        if isinstance(error, DatabaseUnavailable):
            raise error from exc
        raise MigrationError(
            f"migration {migration.name} failed: {exc}",
            migration=migration.name,
            sqlstate=error.sqlstate,
        ) from exc
