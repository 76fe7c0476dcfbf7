"""What the parties and admins are told of calls (typed: :class:`kernel.events.EventSpec`)."""

from __future__ import annotations

from typing import Any

from kernel.events import EventSpec
from signalling.models import (
    AdminCallEvent,
    AnsweredElsewhere,
    CallChange,
    CallIncoming,
    CallSignal,
)

CALL_INCOMING = EventSpec(
    "call.incoming", CallIncoming, "to every device of the callee: a call is ringing"
)
CALL_RINGING = EventSpec(
    "call.ringing", CallChange, "to the caller's devices: your call is ringing"
)
CALL_ACCEPTED = EventSpec("call.accepted", CallChange, "to both parties: the callee answered")
CALL_CONNECTED = EventSpec(
    "call.connected", CallChange, "to both parties: offer and answer exchanged"
)
CALL_ENDED = EventSpec(
    "call.ended", CallChange, "to both parties: the call ended (reason, duration)"
)
ANSWERED_ELSEWHERE = EventSpec(
    "call.answeredElsewhere",
    AnsweredElsewhere,
    "to the callee's other sockets: another device answered (live only, no seq)",
    logged=False,
)
CALL_SIGNAL = EventSpec(
    "call.signal",
    CallSignal,
    "to the other party's device in the call: an offer, answer or candidate (live only, no seq)",
    logged=False,
    omit_none=True,
)
ADMIN_CALL_EVENT = EventSpec(
    "admin.call.event",
    AdminCallEvent,
    "to watching admin sockets: a call event anywhere on the platform (live only)",
    logged=False,
)

#: The event both parties get for a transition (:attr:`signalling.rules.Transition.event`).
TRANSITION_EVENTS = {spec.name: spec for spec in (CALL_ACCEPTED, CALL_CONNECTED, CALL_ENDED)}

ALL: tuple[EventSpec[Any], ...] = (
    CALL_INCOMING,
    CALL_RINGING,
    CALL_ACCEPTED,
    CALL_CONNECTED,
    CALL_ENDED,
    ANSWERED_ELSEWHERE,
    CALL_SIGNAL,
    ADMIN_CALL_EVENT,
)
