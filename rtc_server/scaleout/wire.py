"""Bus messages as bytes on Redis channels: small, and an event's payload never re-encoded.

An event batch is ``E`` + a JSON header + ``\\n`` + the payload exactly as it will be
sent to clients, so the receiving instance slices the payload out instead of parsing
and re-serialising it. The header's user and seq lists are written by the routing
script in Redis (one message per receiving instance, each with only its own users),
so its shape is fixed here and in :data:`rtc_server.scaleout.presence.ROUTE_SCRIPT`.

Revocations (``R``) and signals (``S``) are JSON objects carrying the sending
instance, so an instance can skip its own broadcasts (it handled them locally).
"""

from __future__ import annotations

from typing import Any

import orjson

from kernel.bus import BusMessage, EventBatch, SessionsRevoked, Signal

EVENT = b"E"
REVOKED = b"R"
SIGNAL = b"S"


class WireError(ValueError):
    """A message on the bus that this version cannot read."""


def event_head(event: str, published_at: float) -> bytes:
    """The start of an event message; the routing script appends users, seqs, payload."""
    return EVENT + b'{"e":' + orjson.dumps(event) + b',"t":' + orjson.dumps(published_at) + b","


def encode_event(batch: EventBatch) -> bytes:
    """A whole event message (what the routing script produces for one instance)."""
    users = ",".join(map(str, batch.seqs)).encode()
    seqs = ",".join(map(str, batch.seqs.values())).encode()
    head = event_head(batch.event, batch.published_at)
    return head + b'"u":[' + users + b'],"s":[' + seqs + b"]}\n" + batch.payload


def encode(message: BusMessage, sender: str) -> bytes:
    if isinstance(message, EventBatch):
        return encode_event(message)
    if isinstance(message, SessionsRevoked):
        return REVOKED + orjson.dumps(
            {
                "from": sender,
                "user": message.user_id,
                "sessions": message.session_ids,
                "reason": message.reason,
            }
        )
    return SIGNAL + orjson.dumps({"from": sender, "topic": message.topic, "data": message.data})


def decode(data: bytes) -> tuple[BusMessage, str | None]:
    """The message and its sender (None for events: they are routed, never echoed)."""
    try:
        kind = data[:1]
        if kind == EVENT:
            end = data.index(b"\n")
            head: dict[str, Any] = orjson.loads(data[1:end])
            seqs = dict(zip(head["u"], head["s"], strict=True))
            return EventBatch(head["e"], data[end + 1 :], seqs, float(head["t"])), None
        body: dict[str, Any] = orjson.loads(data[1:])
        if kind == REVOKED:
            revoked = SessionsRevoked(
                int(body["user"]), tuple(str(s) for s in body["sessions"]), str(body["reason"])
            )
            return revoked, str(body["from"])
        if kind == SIGNAL:
            return Signal(str(body["topic"]), dict(body["data"])), str(body["from"])
    except (ValueError, KeyError, TypeError) as exc:
        raise WireError(f"unreadable bus message: {exc}") from exc
    raise WireError(f"unknown bus message kind {kind!r}")
