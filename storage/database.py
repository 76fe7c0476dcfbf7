"""The PostgreSQL connection pool: a thin, typed layer over asyncpg.

Every method translates driver failures into :mod:`storage.errors`; no asyncpg
exception escapes. Rows come back as :class:`asyncpg.Record`; json and jsonb columns
come back as ``str`` (asyncpg's default), so JSON is decoded where it is used.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from .errors import StorageError, translate

__all__ = ["Connection", "Database", "IsolationLevel", "PoolSettings", "PoolStats"]

#: A connection lent by the pool, usable inside ``acquire()`` / ``transaction()`` only.
#: (A string: asyncpg's classes are generic only in its type stubs.)
Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"
IsolationLevel: TypeAlias = Literal["read_committed", "repeatable_read", "serializable"]

APPLICATION_NAME = "buildxpert-rtc"

# What asyncpg and the OS raise when a query or the connection under it fails. Anything
# else raised inside a ``transaction()`` / ``acquire()`` block is the caller's own and
# passes through untouched.
_DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,  # includes TimeoutError, i.e. asyncio.TimeoutError on Python >= 3.11
)


@dataclass(frozen=True)
class PoolSettings:
    """How to reach PostgreSQL and size the pool. Times are in seconds."""

    dsn: str
    # Pool size.
    min_size: int = 1
    max_size: int = 20
    max_inactive_connection_lifetime: float = 30.0  # close connections idle this long
    # Timeouts.
    connect_timeout: float = 10.0
    command_timeout: float | None = 30.0  # per statement; None waits forever
    acquire_timeout: float | None = 5.0  # waiting for a free connection; None: forever
    # Session.
    timezone: str = "Asia/Kolkata"
    statement_cache_size: int = 512


@dataclass(frozen=True)
class PoolStats:
    """A snapshot of the pool, for metrics and health checks."""

    size: int  # open connections
    idle: int  # open connections not lent out
    waiting: int  # coroutines waiting to be lent a connection
    max_size: int


class Database:
    """A pool of PostgreSQL connections. Create it with :meth:`connect`."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], settings: PoolSettings) -> None:
        self._pool = pool
        self._settings = settings
        self._waiting = 0

    @classmethod
    async def connect(cls, settings: PoolSettings) -> Database:
        """Open the pool; raise :class:`DatabaseUnavailable` if PostgreSQL cannot be
        reached within ``connect_timeout``."""
        pool = asyncpg.create_pool(
            settings.dsn,
            min_size=settings.min_size,
            max_size=settings.max_size,
            max_inactive_connection_lifetime=settings.max_inactive_connection_lifetime,
            timeout=settings.connect_timeout,
            command_timeout=settings.command_timeout,
            statement_cache_size=settings.statement_cache_size,
            # asyncpg resets every released connection with a round trip (RESET ALL,
            # UNLISTEN *, advisory unlocks). Single statements and managed
            # transactions change no session state, so only acquire() resets (see
            # there); asyncpg still rolls back a transaction left open.
            reset=_keep_session,
            server_settings={
                "timezone": settings.timezone,
                "application_name": APPLICATION_NAME,
            },
        )
        try:
            # asyncpg's own timeout covers one connection attempt; this bounds the whole
            # start, name resolution and several candidate addresses included.
            async with asyncio.timeout(settings.connect_timeout):
                await pool
        except _DRIVER_ERRORS as exc:
            # A failed init has already terminated its connections. Unreachable servers,
            # refused logins and missing databases are DatabaseUnavailable; a malformed
            # DSN or a bad server setting stays a plain StorageError.
            raise translate(exc) from exc
        return cls(pool, settings)

    @property
    def settings(self) -> PoolSettings:
        return self._settings

    # Queries, each on a connection of its own.

    async def fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        async with self._lend() as conn:
            return await conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: object) -> asyncpg.Record | None:
        async with self._lend() as conn:
            return await conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: object) -> Any:
        async with self._lend() as conn:
            return await conn.fetchval(sql, *args)

    async def execute(self, sql: str, *args: object) -> str:
        """Run a statement; returns PostgreSQL's command tag, e.g. ``"UPDATE 1"``."""
        async with self._lend() as conn:
            return await conn.execute(sql, *args)

    async def executemany(self, sql: str, args: Iterable[Sequence[object]]) -> None:
        async with self._lend() as conn:
            await conn.executemany(sql, args)

    # Connections lent for a block.

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Connection]:
        """Lend a connection for the block, without a transaction.

        The block may change session state (SET, LISTEN, advisory locks): the
        connection is reset before it goes back to the pool. Driver errors raised out
        of the block are translated; so is an ``OSError`` or ``TimeoutError`` of the
        block's own (asyncpg's command timeout is one).
        """
        async with self._lend() as conn:
            try:
                yield conn
            except asyncio.CancelledError:
                raise  # no reset round trip: _lend() terminates the connection
            except BaseException:
                if not conn.is_closed():
                    await conn.reset()
                raise
            if not conn.is_closed():
                await conn.reset()

    @contextlib.asynccontextmanager
    async def _lend(self) -> AsyncIterator[Connection]:
        """A connection for code that changes no session state (no reset after)."""
        try:
            self._waiting += 1
            try:
                conn = await self._pool.acquire(timeout=self._settings.acquire_timeout)
            finally:
                self._waiting -= 1
            try:
                yield conn
            except asyncio.CancelledError:
                # Cancelled (a request's deadline, shutdown) maybe mid-statement, maybe
                # on a stalled server: drop the connection rather than wait on a reset
                # or a ROLLBACK. PostgreSQL rolls back what it had not committed.
                conn.terminate()
                raise
            finally:
                await self._pool.release(conn)
        except _DRIVER_ERRORS as exc:
            raise translate(exc) from exc

    @contextlib.asynccontextmanager
    async def transaction(
        self, *, isolation: IsolationLevel = "read_committed", readonly: bool = False
    ) -> AsyncIterator[Connection]:
        """Lend a connection inside a transaction, committed when the block ends.

        An exception out of the block rolls back; driver errors, including one at
        commit, are translated (a serialization failure becomes
        :class:`SerializationConflict`, to be retried by running the block again).
        """
        # _lend() translates what leaves the transaction, commit included. A block
        # must not change session state (SET LOCAL, not SET): nothing resets it.
        async with self._lend() as conn:
            tx = conn.transaction(isolation=isolation, readonly=readonly)
            await tx.start()
            try:
                yield conn
            except asyncio.CancelledError:
                raise  # no ROLLBACK round trip: _lend() terminates the connection
            except BaseException:
                await tx.rollback()
                raise
            await tx.commit()

    # Lifecycle and health.

    async def ping(self, *, timeout: float = 2.0) -> bool:
        """Whether PostgreSQL answers ``SELECT 1`` within ``timeout``. Never raises."""
        try:
            async with asyncio.timeout(timeout):
                return bool(await self.fetchval("SELECT 1") == 1)
        except (StorageError, *_DRIVER_ERRORS):
            return False

    def stats(self) -> PoolStats:
        return PoolStats(
            size=self._pool.get_size(),
            idle=self._pool.get_idle_size(),
            waiting=self._waiting,
            max_size=self._pool.get_max_size(),
        )

    async def close(self, *, timeout: float = 10.0) -> None:
        """Close the pool, waiting up to ``timeout`` for lent connections to return.

        Connections still lent after that are terminated.
        """
        try:
            async with asyncio.timeout(timeout):
                await self._pool.close()
        except TimeoutError:
            self._pool.terminate()
        except _DRIVER_ERRORS as exc:
            self._pool.terminate()
            raise translate(exc) from exc


async def _keep_session(connection: asyncpg.Connection[asyncpg.Record]) -> None:
    """Pool reset hook: nothing to undo (see ``reset=`` in :meth:`Database.connect`)."""
