"""Opaque keyset cursors of "newest first" lists (bookings, notifications, reports,
calls): part of the RPC layer, so every domain package (``api``, ``signalling``) uses
the same ones.

A cursor carries the id of the last row of a page and a digest of the query it came
from; a cursor of another query (another status, another type ...) or an altered one
is refused with -32602 naming ``cursor``. Lists are read by ``id < last id``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Annotated

import orjson
from pydantic import Field

from kernel.rpc.text import invalid

Cursor = Annotated[str, Field(min_length=1, max_length=200)]
_MAX_ID = 2**63 - 1


def _digest(query: tuple[object, ...]) -> str:
    text = "|".join("" if part is None else str(part) for part in query)
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def encode_cursor(last_id: int, query: tuple[object, ...]) -> str:
    raw = orjson.dumps({"i": last_id, "q": _digest(query)})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, query: tuple[object, ...]) -> int | None:
    """The last id a cursor carries (None for no cursor); -32602 if not one of this query."""
    if cursor is None:
        return None
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        last_id, digest = data["i"], data["q"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise invalid(("cursor", "not a cursor of this list")) from None
    valid = (
        set(data) == {"i", "q"}
        and type(last_id) is int
        and 1 <= last_id <= _MAX_ID
        and digest == _digest(query)
    )
    if not valid:
        raise invalid(("cursor", "not a cursor of this list"))
    return int(last_id)


def next_cursor(ids: list[int], limit: int, query: tuple[object, ...]) -> str | None:
    """The cursor after a page fetched with ``limit + 1`` rows; None if it was the last."""
    if len(ids) <= limit:
        return None
    return encode_cursor(ids[limit - 1], query)
