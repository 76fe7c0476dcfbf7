"""What a call looks like as a push, for a callee whose app is closed.

Calls mark two events for push in their transaction (``push_intents``):
``call.incoming`` (due at once: a closed app must still ring, high priority, kept only
while the call rings) and the callee's ``call.ended`` of a missed call (a normal
alert replacing the ringing one: same collapse key). Both name the caller as the
callee sees them (display name and role), never a phone number.
"""

from __future__ import annotations

import math
from typing import Any

from kernel.push import PushPolicy


def _who(party: dict[str, Any]) -> str:
    name = party.get("displayName") or "Someone"
    return f"{name} ({party.get('role', 'user')})"


def incoming_call_push(data: dict[str, Any]) -> PushPolicy:
    """``call.incoming`` → "Incoming call", at once, for as long as it rings."""
    ring_seconds = math.ceil(int(data.get("ringTimeoutMs", 30_000)) / 1000)
    return PushPolicy.call(
        "Incoming call",
        f"{_who(data['from'])} is calling about booking #{data['bookingId']}",
        ring_seconds=ring_seconds,
        call_id=str(data["callId"]),
    )


def missed_call_push(data: dict[str, Any]) -> PushPolicy:
    """The callee's ``call.ended`` of a missed call → "Missed call"."""
    call = data["call"]
    booking = call.get("bookingId")
    about = f" about booking #{booking}" if booking is not None else ""
    return PushPolicy.missed_call(
        "Missed call", f"{_who(call['other'])} called{about}", call_id=str(call["callId"])
    )
