"""Look-ups of one key each, answered together: one query for many concurrent callers.

A reconnect storm brings thousands of handshakes at once, each needing one row (its
session, its event cursor). A query costs the server and PostgreSQL about the same
for one key as for a few hundred, so :class:`Coalesced` answers every look-up that
arrives while a query is running with the next query: no look-up waits for a timer,
a lone one runs at once, and under load the batches grow by themselves.

Nothing is cached: every answer comes from a query that started after the look-up
was asked for, so it is as fresh as a query of its own would have been.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Coalesced(Generic[K, V]):
    """``await get(key)``: ``fetch(keys)[key]``, or ``missing`` when it has no entry.

    At most one ``fetch`` runs at a time, with at most ``max_batch`` keys; what is
    asked for meanwhile waits for the next one. An error of a ``fetch`` is raised to
    every look-up of its batch.
    """

    def __init__(
        self,
        fetch: Callable[[list[K]], Awaitable[Mapping[K, V]]],
        missing: V,
        max_batch: int = 1000,
    ) -> None:
        self._fetch = fetch
        self._missing = missing
        self._max_batch = max_batch
        self._waiting: dict[K, list[asyncio.Future[V]]] = {}
        self._running: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V:
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        if self._running is None:
            self._running = asyncio.get_running_loop().create_task(self._run())
        return await future

    async def _run(self) -> None:
        try:
            # Let the look-ups asked for in this turn of the loop join the first query.
            await asyncio.sleep(0)
            while self._waiting:
                keys = list(self._waiting)[: self._max_batch]
                batch = {key: self._waiting.pop(key) for key in keys}
                try:
                    found = await self._fetch(keys)
                except asyncio.CancelledError:
                    for futures in batch.values():
                        for future in futures:
                            future.cancel()
                    raise
                except Exception as error:  # noqa: BLE001 - handed to every caller
                    for futures in batch.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(error)
                    continue
                for key, futures in batch.items():
                    value = found.get(key, self._missing)
                    for future in futures:
                        if not future.done():
                            future.set_result(value)
        finally:
            self._running = None
            if self._waiting:  # cancelled with look-ups still waiting
                for futures in self._waiting.values():
                    for future in futures:
                        if not future.done():
                            future.cancel()
                self._waiting.clear()
