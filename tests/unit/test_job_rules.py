"""The job queue's pure rules: backoff delays and periodic slots."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from kernel.jobs import Backoff, slot_of


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [(1, 1.0, 2.0), (2, 2.0, 4.0), (3, 4.0, 8.0), (10, 512.0, 1024.0), (11, 30.0, 60.0)],
)
def test_backoff_doubles_within_equal_jitter_and_is_capped(
    attempt: int, low: float, high: float
) -> None:
    backoff = Backoff(base=2.0, cap=60.0 if attempt == 11 else 3600.0)
    delays = [backoff.delay(attempt, random.Random(seed)) for seed in range(200)]
    assert all(low <= d <= high for d in delays)
    assert max(delays) - min(delays) > (high - low) / 2  # really jittered


def test_backoff_survives_huge_attempt_counts() -> None:
    assert 30.0 <= Backoff(base=2.0, cap=60.0).delay(10_000, random.Random(1)) <= 60.0


@pytest.mark.parametrize(
    ("now", "every", "slot"),
    [
        (
            datetime(2026, 1, 1, 12, 0, 59, tzinfo=UTC),
            60.0,
            datetime(2026, 1, 1, 12, 0, tzinfo=UTC),
        ),
        (datetime(2026, 1, 1, 12, 1, 0, tzinfo=UTC), 60.0, datetime(2026, 1, 1, 12, 1, tzinfo=UTC)),
        (datetime(2026, 1, 1, 12, 59, tzinfo=UTC), 3600.0, datetime(2026, 1, 1, 12, tzinfo=UTC)),
        (
            datetime(2026, 1, 1, 0, 0, 7, 400_000, tzinfo=UTC),
            2.5,
            datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC),
        ),
    ],
)
def test_slot_is_the_start_of_the_tick_aligned_on_the_epoch(
    now: datetime, every: float, slot: datetime
) -> None:
    assert slot_of(now, every) == slot
