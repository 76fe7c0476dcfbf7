"""Look-ups answered together (storage.coalesce): one query per batch, never stale."""

from __future__ import annotations

import asyncio

import pytest

from storage.coalesce import Coalesced


class Table:
    """A fake query: records every batch, answers from ``rows`` as they were when it
    started (as a database statement does), can be held open."""

    def __init__(self, rows: dict[int, str]) -> None:
        self.rows = rows
        self.batches: list[list[int]] = []
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None

    async def fetch(self, keys: list[int]) -> dict[int, str]:
        self.batches.append(list(keys))
        snapshot = {k: self.rows[k] for k in keys if k in self.rows}
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return snapshot


async def test_lookups_of_one_turn_share_one_query() -> None:
    table = Table({1: "a", 2: "b"})
    coalesced = Coalesced(table.fetch, "missing")
    got = await asyncio.gather(*(coalesced.get(k) for k in (1, 2, 3, 1)))
    assert got == ["a", "b", "missing", "a"]
    assert table.batches == [[1, 2, 3]]


async def test_lookups_made_during_a_query_go_into_the_next_one_and_see_newer_rows() -> None:
    table = Table({1: "old"})
    table.gate = asyncio.Event()
    coalesced = Coalesced(table.fetch, "missing")
    first = asyncio.create_task(coalesced.get(1))
    await asyncio.sleep(0.01)  # the first query is running, held open
    table.rows[1] = "new"  # changed after the first query started
    second = asyncio.create_task(coalesced.get(1))
    await asyncio.sleep(0.01)
    assert table.batches == [[1]]  # the second waits for a query of its own
    table.gate.set()
    assert await first == "old"
    assert await second == "new"  # not the answer of the query already running
    assert table.batches == [[1], [1]]


async def test_batches_are_bounded() -> None:
    table = Table({k: str(k) for k in range(10)})
    coalesced = Coalesced(table.fetch, "missing", max_batch=4)
    got = await asyncio.gather(*(coalesced.get(k) for k in range(10)))
    assert got == [str(k) for k in range(10)]
    assert [len(b) for b in table.batches] == [4, 4, 2]


async def test_an_error_reaches_every_lookup_of_its_batch_and_the_next_batch_runs() -> None:
    table = Table({1: "a"})
    table.fail = RuntimeError("database down")
    coalesced = Coalesced(table.fetch, "missing")
    results = await asyncio.gather(coalesced.get(1), coalesced.get(2), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    table.fail = None
    assert await coalesced.get(1) == "a"


async def test_a_cancelled_lookup_does_not_disturb_the_others() -> None:
    table = Table({1: "a", 2: "b"})
    table.gate = asyncio.Event()
    coalesced = Coalesced(table.fetch, "missing")
    gone = asyncio.create_task(coalesced.get(1))
    kept = asyncio.create_task(coalesced.get(2))
    await asyncio.sleep(0.01)
    gone.cancel()
    table.gate.set()
    assert await kept == "b"
    with pytest.raises(asyncio.CancelledError):
        await gone
