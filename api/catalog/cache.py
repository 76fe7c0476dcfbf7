"""The in-memory copy of the catalog, one per instance.

Admin changes publish the ``catalog.changed`` signal; every instance (the publishing
one too) drops its copy and reloads on the next read. Signals are not durable (a
Redis outage loses them), so a copy also expires after ``max_age``: a missed signal
means a stale catalog for at most that long, never for ever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from kernel.bus import Signal
from kernel.clock import Clock
from storage.catalog import Catalog

TOPIC = "catalog.changed"


class CatalogCache:
    def __init__(
        self,
        load: Callable[[], Awaitable[Catalog]],
        clock: Clock,
        *,
        max_age: float = 300.0,
    ) -> None:
        self._load = load
        self._clock = clock
        self._max_age = timedelta(seconds=max_age)
        self._catalog: Catalog | None = None
        self._loaded_at: datetime | None = None
        # Bumped by every invalidation: a load that started before one is not kept.
        self._generation = 0
        self._loading = asyncio.Lock()
        self.loads = 0  # how many times the database was read (for tests and metrics)

    def _fresh(self) -> Catalog | None:
        if self._catalog is None or self._loaded_at is None:
            return None
        if self._clock.now() - self._loaded_at >= self._max_age:
            return None
        return self._catalog

    async def get(self) -> Catalog:
        """The cached catalog, loaded first if absent or expired (one load at a time)."""
        catalog = self._fresh()
        if catalog is not None:
            return catalog
        async with self._loading:
            catalog = self._fresh()
            if catalog is not None:
                return catalog
            generation = self._generation
            catalog = await self._load()
            self.loads += 1
            if generation == self._generation:
                self._catalog, self._loaded_at = catalog, self._clock.now()
            return catalog

    def invalidate(self, signal: Signal | None = None) -> None:
        """Drop the copy (a ``catalog.changed`` signal handler)."""
        self._generation += 1
        self._catalog = None
        self._loaded_at = None
