"""The search cursor: opaque, bound to its query, refused when altered (no loop)."""

from __future__ import annotations

import base64

import orjson
import pytest

from api.providers import SearchProviders, decode_cursor, encode_cursor
from kernel.errors import InvalidParams
from storage.providers import SearchKey

QUERY = SearchProviders.model_validate({"serviceId": 3, "city": "Kochi", "state": "Kerala"})


def _raw(data: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


def test_a_cursor_round_trips_and_ignores_the_case_of_the_place() -> None:
    key = SearchKey(rank=1, years_of_experience=12, id=99)
    cursor = encode_cursor(key, QUERY)
    assert decode_cursor(cursor, QUERY) == key
    same = SearchProviders.model_validate({"serviceId": 3, "city": "KOCHI", "state": "kerala"})
    assert decode_cursor(cursor, same) == key


@pytest.mark.parametrize(
    "query",
    [
        {"serviceId": 4, "city": "Kochi", "state": "Kerala"},
        {"serviceId": 3, "city": "Pune", "state": "Kerala"},
        {"serviceId": 3, "city": "Kochi"},
    ],
)
def test_a_cursor_of_another_search_is_refused(query: dict[str, object]) -> None:
    cursor = encode_cursor(SearchKey(0, 1, 1), QUERY)
    with pytest.raises(InvalidParams) as error:
        decode_cursor(cursor, SearchProviders.model_validate(query))
    assert error.value.data["fields"] == [
        {"field": "cursor", "message": "not a cursor of this search"}
    ]


def _digest() -> object:
    return orjson.loads(base64.urlsafe_b64decode(encode_cursor(SearchKey(0, 0, 1), QUERY) + "=="))[
        "q"
    ]


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 ~~",
        _raw([1, 2, 3]),
        _raw({"r": 3, "e": 1, "i": 1, "q": _digest()}),
        _raw({"r": 0, "e": 81, "i": 1, "q": _digest()}),
        _raw({"r": 0, "e": 1, "i": 0, "q": _digest()}),
        _raw({"r": 0, "e": 1.5, "i": 1, "q": _digest()}),
        _raw({"r": True, "e": 1, "i": 1, "q": _digest()}),
        _raw({"r": 0, "e": 1, "i": 1, "q": _digest(), "x": 1}),
    ],
)
def test_an_altered_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidParams):
        decode_cursor(cursor, QUERY)
