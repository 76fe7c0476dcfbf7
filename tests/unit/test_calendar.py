"""Calendar schedules: the slot a cron expression in a time zone names at a moment,
across day and month ends, daylight saving changes and downtime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from kernel.jobs import Calendar, JobSpec, Tick

SPEC = JobSpec("test.calendar", Tick)
INDIA = ZoneInfo("Asia/Kolkata")
NEW_YORK = ZoneInfo("America/New_York")


def calendar(cron: str, timezone: str = "Asia/Kolkata", grace: float = 3600.0) -> Calendar:
    return Calendar("test.calendar", cron, SPEC, timezone, grace)


def slots(schedule: Calendar, start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    """The distinct slots a checker looking every ``step`` from ``start`` to ``end`` sees."""
    seen: list[datetime] = []
    now, end = start.astimezone(UTC), end.astimezone(UTC)  # real time, not wall time
    while now < end:
        slot = schedule.slot(now)
        if slot is not None and slot not in seen:
            seen.append(slot)
        now += step
    return seen


def test_nine_in_india_is_half_past_three_utc() -> None:
    nine = calendar("0 9 * * *")
    assert nine.slot(datetime(2026, 12, 7, 8, 59, 59, tzinfo=INDIA)) is None
    slot = nine.slot(datetime(2026, 12, 7, 9, 0, tzinfo=INDIA))
    assert slot == datetime(2026, 12, 7, 3, 30, tzinfo=UTC)
    # The same slot for the whole hour of grace, then none.
    assert nine.slot(datetime(2026, 12, 7, 9, 59, tzinfo=INDIA)) == slot
    assert nine.slot(datetime(2026, 12, 7, 10, 0, 1, tzinfo=INDIA)) is None
    assert nine.next_after(datetime(2026, 12, 7, 9, 0, tzinfo=INDIA)) == datetime(
        2026, 12, 8, 9, 0, tzinfo=INDIA
    )


def test_one_slot_a_day_across_a_month_and_a_year_end() -> None:
    morning = calendar("0 8 * * *")
    seen = slots(
        morning,
        datetime(2026, 12, 30, 0, 0, tzinfo=INDIA),
        datetime(2027, 1, 2, 12, 0, tzinfo=INDIA),
        timedelta(minutes=7),
    )
    assert [s.astimezone(INDIA).date().isoformat() for s in seen] == [
        "2026-12-30",
        "2026-12-31",
        "2027-01-01",
        "2027-01-02",
    ]
    assert {s.astimezone(INDIA).hour for s in seen} == {8}


def test_the_last_day_of_each_month() -> None:
    last = calendar("0 23 L * *")
    seen = slots(
        last,
        datetime(2027, 1, 1, tzinfo=INDIA),
        datetime(2027, 4, 1, tzinfo=INDIA),
        timedelta(hours=1),
    )
    assert [s.astimezone(INDIA).date().isoformat() for s in seen] == [
        "2027-01-31",
        "2027-02-28",
        "2027-03-31",
    ]


def test_spring_forward_runs_a_missing_time_once_after_the_gap() -> None:
    half_past_two = calendar("30 2 * * *", "America/New_York")
    seen = slots(
        half_past_two,
        datetime(2026, 3, 7, 12, 0, tzinfo=NEW_YORK),
        datetime(2026, 3, 9, 12, 0, tzinfo=NEW_YORK),
        timedelta(minutes=1),
    )
    # 2:30 does not exist on March 8: that day's run is at 3:00 EDT, once.
    assert [s.astimezone(NEW_YORK).isoformat() for s in seen] == [
        "2026-03-08T03:00:00-04:00",
        "2026-03-09T02:30:00-04:00",
    ]


def test_fall_back_runs_a_repeated_time_once() -> None:
    half_past_one = calendar("30 1 * * *", "America/New_York")
    seen = slots(
        half_past_one,
        datetime(2026, 10, 31, 12, 0, tzinfo=NEW_YORK),
        datetime(2026, 11, 2, 12, 0, tzinfo=NEW_YORK),
        timedelta(minutes=1),
    )
    # 1:30 happens twice on November 1: the job runs at the first one only.
    assert [s.isoformat() for s in seen] == [
        "2026-11-01T05:30:00+00:00",  # 01:30 EDT
        "2026-11-02T06:30:00+00:00",  # 01:30 EST
    ]


def test_every_half_hour_runs_through_both_repeated_hours() -> None:
    half_hourly = calendar("*/30 * * * *", "America/New_York", grace=60)
    seen = slots(
        half_hourly,
        datetime(2026, 11, 1, 0, 50, tzinfo=NEW_YORK),
        datetime(2026, 11, 1, 2, 10, tzinfo=NEW_YORK),
        timedelta(minutes=1),
    )
    assert len(seen) == 5  # 1:00 and 1:30 EDT, 1:00 and 1:30 EST, 2:00 EST
    assert all(b - a == timedelta(minutes=30) for a, b in zip(seen, seen[1:], strict=False))


def test_after_downtime_only_the_latest_slot_within_grace_runs() -> None:
    hourly = calendar("0 * * * *", grace=7200)
    # Down from 09:10 to 12:20: the 10:00, 11:00 and 12:00 slots passed; only 12:00 runs.
    back = datetime(2026, 12, 7, 12, 20, tzinfo=INDIA)
    assert hourly.slot(back) == datetime(2026, 12, 7, 12, 0, tzinfo=INDIA)
    daily = calendar("0 9 * * *", grace=3600)
    # Back at 10:30: the 09:00 slot is more than its grace old: it does not run.
    assert daily.slot(datetime(2026, 12, 7, 10, 30, tzinfo=INDIA)) is None


@pytest.mark.parametrize(
    ("cron", "timezone", "grace", "message"),
    [
        ("61 * * * *", "Asia/Kolkata", 60.0, "bad cron expression"),
        ("every day", "Asia/Kolkata", 60.0, "bad cron expression"),
        ("0 9 * * *", "Asia/Calcutta Standard", 60.0, "unknown time zone"),
        ("0 9 * * *", "Asia/Kolkata", 0.0, "grace must be positive"),
        ("0 9 * * *", "Asia/Kolkata", 90000.0, "grace must be positive and at most a day"),
    ],
)
def test_a_bad_schedule_is_refused_naming_its_job(
    cron: str, timezone: str, grace: float, message: str
) -> None:
    with pytest.raises(ValueError, match=f"test.calendar: {message}"):
        calendar(cron, timezone, grace)
