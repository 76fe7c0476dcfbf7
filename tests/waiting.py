"""Waiting for a condition that other tasks (servers, buses, peers) make true."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable


async def until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    """Poll ``predicate`` until it is true (awaited when it returns an awaitable: a
    query); AssertionError after ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                value = predicate()
                if inspect.isawaitable(value):
                    value = await value
                if value:
                    return
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"condition not reached in {timeout} s") from None
