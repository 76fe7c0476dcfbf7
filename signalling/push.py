"""What a call looks like as a push, for a callee whose app is closed.

Calls mark two events for push in their transaction (``push_intents``):
``call.incoming`` (due at once: a closed app must still ring, high priority, kept only
while the call rings) and the callee's ``call.ended`` of a missed call (a normal
alert replacing the ringing one: same collapse key). Both name the caller as the
callee sees them (display name and role), never a phone number.
"""

from __future__ import annotations

import math

from kernel.push import PushPolicy
from signalling.models import CallChange, CallIncoming, MaskedParty


def _who(party: MaskedParty) -> str:
    return f"{party.display_name or 'Someone'} ({party.role})"


def incoming_call_push(incoming: CallIncoming) -> PushPolicy:
    """``call.incoming`` → "Incoming call", at once, for as long as it rings."""
    return PushPolicy.call(
        "Incoming call",
        f"{_who(incoming.from_)} is calling about booking #{incoming.booking_id}",
        ring_seconds=math.ceil(incoming.ring_timeout_ms / 1000),
        call_id=str(incoming.call_id),
    )


def missed_call_push(change: CallChange) -> PushPolicy:
    """The callee's ``call.ended`` of a missed call → "Missed call"."""
    call = change.call
    about = f" about booking #{call.booking_id}" if call.booking_id is not None else ""
    return PushPolicy.missed_call(
        "Missed call", f"{_who(call.other)} called{about}", call_id=str(call.call_id)
    )
