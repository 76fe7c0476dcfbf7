"""JSON-RPC framing: every kind of bad frame maps to the right error, never an exception."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernel.errors import InvalidRequest, ParseError, RateLimited
from kernel.rpc.codec import (
    MAX_BATCH,
    BadItem,
    Request,
    decode_frame,
    encode_error,
    encode_event,
    encode_result,
)


def test_request_with_named_params() -> None:
    frame = decode_frame('{"jsonrpc":"2.0","id":7,"method":"system.ping","params":{"a":1}}')
    assert not frame.batch
    assert frame.items == [Request("system.ping", {"a": 1}, 7, notification=False)]


def test_notification_has_no_id() -> None:
    (item,) = decode_frame('{"jsonrpc":"2.0","method":"events.ack","params":{"seq":3}}').items
    assert isinstance(item, Request) and item.notification and item.id is None


def test_null_id_is_a_request_not_a_notification() -> None:
    (item,) = decode_frame('{"jsonrpc":"2.0","id":null,"method":"m"}').items
    assert isinstance(item, Request) and not item.notification


@pytest.mark.parametrize(
    ("text", "error", "request_id"),
    [
        ("not json", ParseError, None),
        ('{"jsonrpc":"2.0","method":"m"', ParseError, None),
        ("[]", InvalidRequest, None),
        ("42", InvalidRequest, None),
        ('"str"', InvalidRequest, None),
        ('{"jsonrpc":"1.0","id":1,"method":"m"}', InvalidRequest, 1),
        ('{"id":1,"method":"m"}', InvalidRequest, 1),
        ('{"jsonrpc":"2.0","id":1,"method":""}', InvalidRequest, 1),
        ('{"jsonrpc":"2.0","id":1,"method":5}', InvalidRequest, 1),
        ('{"jsonrpc":"2.0","id":1,"method":"m","params":3}', InvalidRequest, 1),
        ('{"jsonrpc":"2.0","id":1,"method":"m","extra":true}', InvalidRequest, 1),
        ('{"jsonrpc":"2.0","id":1.5,"method":"m"}', InvalidRequest, None),
        ('{"jsonrpc":"2.0","id":true,"method":"m"}', InvalidRequest, None),
        ('{"jsonrpc":"2.0","id":{"a":1},"method":"m"}', InvalidRequest, None),
        ('{"jsonrpc":"2.0","id":9007199254740993,"method":"m"}', InvalidRequest, None),
        (
            '{"jsonrpc":"2.0","id":1,"method":"m","params":' + "[" * 2000 + "]" * 2000 + "}",
            ParseError,
            None,
        ),
        # orjson reads integers past 64 bits as floats: not a valid id.
        (
            '{"jsonrpc":"2.0","id":123456789012345678901234567890,"method":"m"}',
            InvalidRequest,
            None,
        ),
    ],
)
def test_bad_frames(text: str, error: type, request_id: object) -> None:
    (item,) = decode_frame(text).items
    assert isinstance(item, BadItem)
    assert type(item.error) is error
    assert item.id == request_id


def test_batch_items_are_judged_one_by_one() -> None:
    frame = decode_frame(
        '[{"jsonrpc":"2.0","id":1,"method":"a"}, 5, {"jsonrpc":"2.0","method":"b"}]'
    )
    assert frame.batch
    assert isinstance(frame.items[0], Request)
    assert isinstance(frame.items[1], BadItem)
    assert isinstance(frame.items[2], Request) and frame.items[2].notification


def test_oversized_batch_is_refused_whole() -> None:
    body = ",".join(f'{{"jsonrpc":"2.0","id":{i},"method":"m"}}' for i in range(MAX_BATCH + 1))
    (item,) = decode_frame("[" + body + "]").items
    assert isinstance(item, BadItem) and item.error.data["limit"] == MAX_BATCH


def test_encoded_responses_are_valid_json_rpc() -> None:
    assert orjson.loads(encode_result("a", b'{"x":1}')) == {
        "jsonrpc": "2.0",
        "id": "a",
        "result": {"x": 1},
    }
    error = orjson.loads(encode_error(3, RateLimited("slow down", retry_after=1.5)))
    assert error["id"] == 3
    assert error["error"]["code"] == 4029
    assert error["error"]["data"] == {
        "error": "rate_limited",
        "retryable": True,
        "retryAfterMs": 1500,
    }


def test_event_frame() -> None:
    frame = orjson.loads(encode_event(b'"booking.offered"', 12, b'{"id":5}'))
    assert frame == {
        "jsonrpc": "2.0",
        "method": "booking.offered",
        "params": {"seq": 12, "data": {"id": 5}},
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    frame = decode_frame(data)
    assert frame.items


@given(json_values)
def test_arbitrary_json_is_request_or_error(value: object) -> None:
    frame = decode_frame(json.dumps(value))
    for item in frame.items:
        assert isinstance(item, (Request, BadItem))
        if isinstance(item, BadItem):
            # Every error answer must itself encode.
            orjson.loads(encode_error(item.id, item.error))
