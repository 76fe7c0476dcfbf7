"""JSON-RPC 2.0 framing: text in, requests out; results and errors in, text out.

Pure functions, no I/O (https://www.jsonrpc.org/specification). One websocket text
frame carries one request object or a batch (an array of them). Ids are strings or
integers; a request without ``id`` is a notification and gets no response.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from kernel.errors import InvalidRequest, ParseError, RpcError

RequestId = str | int | None

# Batches larger than this are refused whole: one frame must not fan out into
# unbounded work.
MAX_BATCH = 32
MAX_METHOD_LENGTH = 128
MAX_ID_LENGTH = 128
_MEMBERS = frozenset({"jsonrpc", "method", "params", "id"})
# JavaScript clients read ids as doubles: integers beyond 2**53 would be mangled.
_MIN_ID, _MAX_ID = -(2**53), 2**53


# NamedTuples: built once per request on the hot path, and a tuple is the cheapest
# immutable record Python makes (a frozen dataclass costs several times more).
class Request(NamedTuple):
    method: str
    params: dict[str, Any] | list[Any] | None
    id: RequestId
    notification: bool  # no "id" member: no response is sent


class BadItem(NamedTuple):
    """An item of a frame that is not a valid request; answered with ``error``."""

    id: RequestId
    error: RpcError


Item = Request | BadItem


class Frame(NamedTuple):
    items: list[Item]
    batch: bool


def decode_frame(data: str | bytes, max_batch: int = MAX_BATCH) -> Frame:
    """Decode one text frame. Never raises: problems become :class:`BadItem`.

    A batch larger than ``min(max_batch, MAX_BATCH)`` is refused whole.
    """
    max_batch = min(max_batch, MAX_BATCH)
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        return Frame([BadItem(None, ParseError("frame is not valid JSON"))], batch=False)
    if isinstance(payload, list):
        if not payload:
            return Frame([BadItem(None, InvalidRequest("empty batch"))], batch=False)
        if len(payload) > max_batch:
            error = InvalidRequest(f"batch larger than {max_batch}", limit=max_batch)
            return Frame([BadItem(None, error)], batch=False)
        return Frame([_decode_item(item) for item in payload], True)
    return Frame([_decode_item(payload)], False)


def _decode_item(item: Any) -> Item:
    # Fast path: one expression for a well-formed request (orjson builds exact
    # dict/list/str/int types); anything else goes to _diagnose for a precise error.
    if type(item) is dict:
        get = item.get
        request_id = get("id")
        method = get("method")
        params = get("params")
        if (
            get("jsonrpc") == "2.0"
            and type(method) is str
            and 0 < len(method) <= MAX_METHOD_LENGTH
            and (params is None or type(params) is dict or type(params) is list)
            and (
                (type(request_id) is int and _MIN_ID <= request_id <= _MAX_ID)
                or (type(request_id) is str and len(request_id) <= MAX_ID_LENGTH)
                or request_id is None
            )
            and item.keys() <= _MEMBERS
        ):
            return Request(method, params, request_id, "id" not in item)
    return _diagnose(item)


def _diagnose(item: Any) -> BadItem:
    """Why ``item`` is not a valid request (JSON-RPC 2.0 section 4)."""
    if not isinstance(item, dict):
        return BadItem(None, InvalidRequest("a request must be a JSON object"))
    request_id = item.get("id")
    if not _valid_id(request_id):
        return BadItem(None, InvalidRequest("id must be a string, an integer or null"))
    if item.get("jsonrpc") != "2.0":
        return BadItem(request_id, InvalidRequest('jsonrpc must be exactly "2.0"'))
    method = item.get("method")
    if not isinstance(method, str) or not method or len(method) > MAX_METHOD_LENGTH:
        return BadItem(request_id, InvalidRequest("method must be a non-empty string"))
    params = item.get("params")
    if params is not None and not isinstance(params, (dict, list)):
        return BadItem(request_id, InvalidRequest("params must be an object or an array"))
    extra = sorted(item.keys() - _MEMBERS)
    return BadItem(request_id, InvalidRequest(f"unknown members: {extra}"))


def _valid_id(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return _MIN_ID <= value <= _MAX_ID
    if isinstance(value, str):
        return len(value) <= MAX_ID_LENGTH
    return False


def encode_result(request_id: RequestId, result_json: bytes) -> bytes:
    """A success response around an already encoded result."""
    encoded_id = str(request_id).encode() if type(request_id) is int else orjson.dumps(request_id)
    return b'{"jsonrpc":"2.0","id":' + encoded_id + b',"result":' + result_json + b"}"


def encode_error(request_id: RequestId, error: RpcError) -> bytes:
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "error": error.to_error()})


def encode_batch(responses: list[bytes]) -> bytes:
    return b"[" + b",".join(responses) + b"]"


def encode_event(method: bytes, seq: int, payload_json: bytes) -> bytes:
    """A server-to-client event: a JSON-RPC notification whose params carry ``seq``.

    ``method`` is the event name, already encoded as a JSON string (with quotes);
    ``payload_json`` the event's data as JSON. Built by concatenation so an event
    published to many users is encoded once.
    """
    return (
        b'{"jsonrpc":"2.0","method":'
        + method
        + b',"params":{"seq":'
        + str(seq).encode()
        + b',"data":'
        + payload_json
        + b"}}"
    )


def encode_live(method: str, params_json: bytes) -> bytes:
    """A notification whose params are already JSON (a live event's data)."""
    return b'{"jsonrpc":"2.0","method":' + orjson.dumps(method) + b',"params":' + params_json + b"}"


def encode_notification(method: str, params: dict[str, Any]) -> bytes:
    """A server-to-client notification outside the event log (no ``seq``)."""
    return orjson.dumps({"jsonrpc": "2.0", "method": method, "params": params})
