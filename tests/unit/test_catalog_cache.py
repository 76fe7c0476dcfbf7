"""The in-memory catalog: loads once, expires, and never keeps a load an
invalidation overtook. A fake clock and a fake loader; no database."""

from __future__ import annotations

import asyncio

from api.catalog.cache import CatalogCache
from api.catalog.service import ListServices, etag
from kernel.clock import FakeClock
from storage.catalog import Catalog


class Loader:
    def __init__(self) -> None:
        self.version = 1
        self.calls = 0
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> Catalog:
        self.calls += 1
        version = self.version
        if self.gate is not None:
            await self.gate.wait()
        return Catalog(version, ())


async def test_loads_once_then_serves_from_memory_until_it_expires() -> None:
    clock, load = FakeClock(), Loader()
    cache = CatalogCache(load, clock, max_age=60)
    await asyncio.gather(*(cache.get() for _ in range(5)))
    assert load.calls == 1
    clock.advance(59)
    await cache.get()
    assert load.calls == 1
    clock.advance(1)
    await cache.get()
    assert load.calls == 2


async def test_invalidate_drops_the_copy() -> None:
    load = Loader()
    cache = CatalogCache(load, FakeClock())
    assert (await cache.get()).version == 1
    load.version = 2
    assert (await cache.get()).version == 1
    cache.invalidate()
    assert (await cache.get()).version == 2


async def test_a_load_overtaken_by_an_invalidation_is_not_kept() -> None:
    load = Loader()
    load.gate = asyncio.Event()
    cache = CatalogCache(load, FakeClock())
    first = asyncio.create_task(cache.get())
    await asyncio.sleep(0)
    cache.invalidate()  # the admin change committed while the old catalog was read
    load.gate.set()
    assert (await first).version == 1  # that caller gets what it read
    load.version = 2
    assert (await cache.get()).version == 2 and load.calls == 2


def test_etag_names_the_version_and_the_query() -> None:
    query = ListServices.model_validate({"category": "repairs"})
    assert etag(1, query) == etag(1, ListServices.model_validate({"category": "repairs"}))
    assert etag(1, query) != etag(2, query)
    assert etag(1, query) != etag(1, ListServices.model_validate({}))
    assert etag(1, query) != etag(
        1, ListServices.model_validate({"category": "repairs", "limit": 5})
    )
