from __future__ import annotations

import pytest

from rtc_server.ratelimit import TokenBucket


def test_burst_then_refill() -> None:
    bucket = TokenBucket(rate=10, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.1)
    assert bucket.take(0.05) == pytest.approx(0.05)
    assert bucket.take(0.1) == 0.0


def test_never_saves_more_than_burst() -> None:
    bucket = TokenBucket(rate=100, burst=2, now=0.0)
    bucket.take(1000.0)
    bucket.take(1000.0)
    assert bucket.take(1000.0) > 0


def test_cost_of_a_batch() -> None:
    bucket = TokenBucket(rate=1, burst=5, now=0.0)
    assert bucket.take(0.0, cost=5) == 0.0
    assert bucket.take(0.0, cost=2) == pytest.approx(2.0)
