"""Cursors of newest-first lists: round trip, bound to their query, altered ones refused."""

from __future__ import annotations

import base64

import orjson
import pytest

from kernel.errors import InvalidParams
from kernel.rpc.cursors import decode_cursor, encode_cursor, next_cursor

QUERY = ("bookings", "customer", "pending")


def _raw(data: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


def test_round_trip_and_no_cursor() -> None:
    assert decode_cursor(encode_cursor(42, QUERY), QUERY) == 42
    assert decode_cursor(None, QUERY) is None


def test_next_cursor_only_when_there_is_more() -> None:
    assert next_cursor([9, 8, 7], 3, QUERY) is None
    cursor = next_cursor([9, 8, 7, 6], 3, QUERY)
    assert cursor is not None and decode_cursor(cursor, QUERY) == 7


@pytest.mark.parametrize(
    "query", [("bookings", "customer", None), ("bookings", "provider", "pending"), ("x",)]
)
def test_a_cursor_of_another_list_is_refused(query: tuple[object, ...]) -> None:
    with pytest.raises(InvalidParams) as error:
        decode_cursor(encode_cursor(5, QUERY), query)
    assert error.value.data["fields"] == [
        {"field": "cursor", "message": "not a cursor of this list"}
    ]


def _digest() -> object:
    return orjson.loads(base64.urlsafe_b64decode(encode_cursor(1, QUERY) + "=="))["q"]


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 ~~",
        _raw([1, 2]),
        _raw({"i": 0, "q": _digest()}),
        _raw({"i": 2**63, "q": _digest()}),
        _raw({"i": 1.5, "q": _digest()}),
        _raw({"i": True, "q": _digest()}),
        _raw({"i": 1, "q": _digest(), "x": 1}),
        _raw({"i": 1}),
    ],
)
def test_an_altered_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidParams):
        decode_cursor(cursor, QUERY)
