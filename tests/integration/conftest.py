"""Fixtures shared by the integration tests of push delivery."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from kernel.clock import FakeClock
from tests.fakes.fcm import FakeFcm


@pytest.fixture
def clock() -> FakeClock:
    """Starts at the real time: the fake APNs and Web Push servers check the tokens'
    times (iat, exp) against theirs."""
    return FakeClock(datetime.now(UTC))


@pytest.fixture
async def fcm() -> AsyncIterator[FakeFcm]:
    server = await FakeFcm().start()
    yield server
    await server.close()
