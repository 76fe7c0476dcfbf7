"""HTTP range requests on stored objects (kernel/ranges.py, RFC 9110 §14)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kernel.ranges import (
    ByteRange,
    RangeNotSatisfiable,
    http_date,
    requested_range,
    unsatisfied,
)

SIZE = 1000
MODIFIED = datetime(2026, 11, 26, 10, 30, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "wanted"),
    [
        ("bytes=0-99", ByteRange(0, 100)),
        ("bytes=100-", ByteRange(100, 1000)),
        ("bytes=-10", ByteRange(990, 1000)),
        ("bytes=-5000", ByteRange(0, 1000)),  # a suffix longer than the object: all of it
        ("bytes=990-5000", ByteRange(990, 1000)),  # a last-pos past the end: to the end
        ("bytes=999-999", ByteRange(999, 1000)),
        ("bytes = 5 - 9", ByteRange(5, 10)),
        ("BYTES=0-0", ByteRange(0, 1)),
    ],
)
def test_a_satisfiable_range_is_the_bytes_it_names(header: str, wanted: ByteRange) -> None:
    assert requested_range(header, SIZE) == wanted


@pytest.mark.parametrize(
    "header",
    [None, "", "items=0-10", "bytes=0-10,20-30"],  # no range, another unit, several ranges
)
def test_what_is_not_one_byte_range_gets_the_whole_object(header: str | None) -> None:
    assert requested_range(header, SIZE) is None


@pytest.mark.parametrize(
    "header",
    ["bytes=1000-", "bytes=5000-6000", "bytes=-0", "bytes=10-5", "bytes=abc", "bytes=-", "bytes="],
)
def test_a_range_past_the_end_or_malformed_is_refused(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        requested_range(header, SIZE)


def test_nothing_of_an_empty_object_is_a_range() -> None:
    for header in ("bytes=0-", "bytes=-1"):
        with pytest.raises(RangeNotSatisfiable):
            requested_range(header, 0)


def test_headers_of_the_answers() -> None:
    assert ByteRange(0, 100).content_range(SIZE) == "bytes 0-99/1000"
    assert ByteRange(0, 100).length == 100
    assert unsatisfied(SIZE) == "bytes */1000"
    assert http_date(MODIFIED) == "Thu, 26 Nov 2026 10:30:15 GMT"


@pytest.mark.parametrize(
    ("if_range", "honoured"),
    [
        ('"abc-1"', True),  # the object's ETag
        ('"abc-2"', False),  # changed since
        ('W/"abc-1"', False),  # a weak tag never matches (§13.1.5)
        ("Thu, 26 Nov 2026 10:30:15 GMT", True),  # the exact Last-Modified
        ("Thu, 26 Nov 2026 10:30:14 GMT", False),
        ("not a date", False),
    ],
)
def test_if_range_sends_the_range_only_for_the_same_object(if_range: str, honoured: bool) -> None:
    got = requested_range("bytes=0-9", SIZE, if_range=if_range, etag="abc-1", modified=MODIFIED)
    assert got == (ByteRange(0, 10) if honoured else None)


def test_if_range_without_a_validator_never_matches() -> None:
    assert requested_range("bytes=0-9", SIZE, if_range='""') is None
    assert requested_range("bytes=0-9", SIZE, if_range="Thu, 26 Nov 2026 10:30:15 GMT") is None
