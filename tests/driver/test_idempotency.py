"""Mutating methods: a retry with the same idempotencyKey returns the first result."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from kernel.errors import Unprocessable
from kernel.rpc.registry import Caller, IdempotentParams, Result
from rtc_server.app import App
from rtc_server.client import RpcCallError

from .conftest import MemoryClients


class Create(IdempotentParams):
    amount: int
    fail: bool = False


class Created(Result):
    number: int
    amount: int


@pytest.fixture
def counter(core: App) -> list[int]:
    numbers = itertools.count(1)
    calls: list[int] = []
    gate = asyncio.Event()
    gate.set()

    async def create(caller: Caller, params: Create) -> Created:
        calls.append(params.amount)
        await gate.wait()
        if params.fail:
            raise Unprocessable("refused this time")
        return Created(number=next(numbers), amount=params.amount)

    core.registry.add("test.create", create, params=Create, result=Created)
    core.test_gate = gate  # type: ignore[attr-defined]
    return calls


async def test_retry_returns_the_first_result(clients: MemoryClients, counter: list[int]) -> None:
    client, _ = await clients.login()
    first = await client.call("test.create", {"idempotencyKey": "key-0001", "amount": 5})
    again = await client.call("test.create", {"idempotencyKey": "key-0001", "amount": 5})
    other = await client.call("test.create", {"idempotencyKey": "key-0002", "amount": 5})
    assert first == again == {"number": 1, "amount": 5}
    assert other["number"] == 2
    assert counter == [5, 5]


async def test_keys_are_per_user(clients: MemoryClients, counter: list[int]) -> None:
    alice, _ = await clients.login()
    bob, _ = await clients.login()
    await alice.call("test.create", {"idempotencyKey": "shared-key", "amount": 1})
    await bob.call("test.create", {"idempotencyKey": "shared-key", "amount": 1})
    assert counter == [1, 1]


async def test_same_key_other_params_is_refused(clients: MemoryClients, counter: list[int]) -> None:
    client, _ = await clients.login()
    await client.call("test.create", {"idempotencyKey": "key-0003", "amount": 5})
    with pytest.raises(RpcCallError) as refused:
        await client.call("test.create", {"idempotencyKey": "key-0003", "amount": 6})
    assert refused.value.name == "idempotency_mismatch" and refused.value.code == 4090
    assert counter == [5]


async def test_failed_first_call_lets_the_retry_run(
    clients: MemoryClients, counter: list[int]
) -> None:
    client, _ = await clients.login()
    with pytest.raises(RpcCallError):
        await client.call("test.create", {"idempotencyKey": "key-0004", "amount": 1, "fail": True})
    with pytest.raises(RpcCallError):
        await client.call("test.create", {"idempotencyKey": "key-0004", "amount": 1, "fail": True})
    assert counter == [1, 1]


async def test_concurrent_retry_while_first_runs(
    core: App, clients: MemoryClients, counter: list[int]
) -> None:
    client, _ = await clients.login()
    gate: asyncio.Event = core.test_gate  # type: ignore[attr-defined]
    gate.clear()
    first = asyncio.create_task(
        client.call("test.create", {"idempotencyKey": "key-0005", "amount": 2})
    )
    while not counter:
        await asyncio.sleep(0.01)
    with pytest.raises(RpcCallError) as busy:
        await client.call("test.create", {"idempotencyKey": "key-0005", "amount": 2})
    assert busy.value.name == "conflict" and busy.value.data["retryable"] is True
    gate.set()
    assert (await first)["number"] == 1
    assert (await client.call("test.create", {"idempotencyKey": "key-0005", "amount": 2}))[
        "number"
    ] == 1
    assert counter == [2]


async def test_key_is_required_and_validated(clients: MemoryClients, counter: list[int]) -> None:
    client, _ = await clients.login()
    with pytest.raises(RpcCallError) as missing:
        await client.call("test.create", {"amount": 1})
    assert missing.value.data["fields"][0]["field"] == "idempotencyKey"
    with pytest.raises(RpcCallError):
        await client.call("test.create", {"idempotencyKey": "bad key with spaces", "amount": 1})
    assert counter == []


async def test_claim_of_a_dead_first_call_is_taken_over(
    core: App, clients: MemoryClients, counter: list[int]
) -> None:
    """A first call whose process died leaves a claim without result: after
    stale_after, a retry runs instead of being refused for a day."""
    client, _ = await clients.login()
    gate: asyncio.Event = core.test_gate  # type: ignore[attr-defined]
    gate.clear()
    stuck = asyncio.create_task(
        client.call("test.create", {"idempotencyKey": "key-0006", "amount": 3})
    )
    while not counter:
        await asyncio.sleep(0.01)
    core.dispatcher.idempotency.stale_after = 0.0
    retry = asyncio.create_task(
        client.call("test.create", {"idempotencyKey": "key-0006", "amount": 3})
    )
    while len(counter) < 2:  # the retry took the key over and runs the method
        await asyncio.sleep(0.01)
    gate.set()
    assert (await retry)["amount"] == 3
    await stuck
