"""Pure rules of push delivery: call policies, notices through a job's JSON,
Retry-After parsing, the providers' payloads."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from kernel.push import PushNotice, PushPolicy
from rtc_server.push.providers.base import retry_after


def test_a_call_rings_at_once_and_its_missed_call_replaces_it() -> None:
    ring = PushPolicy.call("Incoming call", "Ravi (plumber)", ring_seconds=30, call_id="c-1")
    missed = PushPolicy.missed_call("Missed call", "Ravi (plumber)", call_id="c-1")
    assert ring.immediate and ring.notice.call and ring.notice.urgency == "high"
    assert ring.notice.ttl == 30 and ring.notice.category == "calls"
    assert not missed.immediate and not missed.notice.call and missed.notice.urgency == "normal"
    assert ring.notice.collapse_key == missed.notice.collapse_key == "call:c-1"


def test_a_notice_survives_the_jobs_json() -> None:
    notice = PushNotice(
        "New job", "Plumbing", "bookings", collapse_key="booking:1", data={"bookingId": "1"}
    )
    assert PushNotice.from_json(orjson.loads(orjson.dumps(notice.to_json()))) == notice


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("Thu, 26 Nov 2026 10:00:30 GMT", 30.0),
        ("Thu, 26 Nov 2026 09:59:00 GMT", 0.0),  # in the past: at once
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_reads_seconds_or_an_http_date(
    header: str | None, seconds: float | None
) -> None:
    now = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
    assert retry_after(header, now) == seconds
