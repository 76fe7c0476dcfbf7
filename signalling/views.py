"""How a call looks to each reader: a party (the other one masked), an admin, the trail.

Pure functions from rows to wire models; no I/O.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from signalling.models import AdminCall, AdminCallEvent, CallView, MaskedParty
from signalling.rules import Action, Actor, CallState, Transition
from storage.calls import CallEventRow, CallRow, SignalRoute


def actor_of(row: CallRow | SignalRoute | None, user_id: int) -> Actor | None:
    """Which party ``user_id`` is in the call, or None."""
    if row is None:
        return None
    if row.caller_id == user_id:
        return Actor.CALLER
    if row.callee_id == user_id:
        return Actor.CALLEE
    return None


def changes(t: Transition, now: datetime, device: str | None) -> dict[str, Any]:
    """The columns a transition sets on the call's row."""
    columns: dict[str, Any] = {"state": t.after.value}
    if t.action is Action.ACCEPT:
        columns.update(accepted_at=now, callee_device=device)
    elif t.action is Action.CONNECT:
        columns["connected_at"] = now
    if t.after is CallState.ENDED:
        assert t.reason is not None
        columns.update(end_reason=t.reason.value, ended_by=t.actor.value, ended_at=now)
    return columns


def duration_ms(row: CallRow, now: datetime) -> int:
    if row.accepted_at is None:
        return 0
    return max(0, int(((row.ended_at or now) - row.accepted_at).total_seconds() * 1000))


def masked(name: str | None, role: str | None) -> MaskedParty:
    side = "provider" if role == "provider" else "customer"
    return MaskedParty(display_name=name or side.capitalize(), role=side)


def view(row: CallRow, user_id: int | None, now: datetime) -> CallView:
    """The call as the party ``user_id`` sees it: the other one masked."""
    outgoing = row.caller_id == user_id
    callee_side = "provider" if row.caller_side == "customer" else "customer"
    other = (
        masked(row.callee_name, callee_side)
        if outgoing
        else masked(row.caller_name, row.caller_side)
    )
    return CallView(
        call_id=row.id,
        booking_id=row.booking_id,
        direction="outgoing" if outgoing else "incoming",
        other=other,
        media=row.media,
        state=row.state,
        end_reason=row.end_reason,
        created_at=row.created_at,
        accepted_at=row.accepted_at,
        ended_at=row.ended_at,
        duration_ms=duration_ms(row, now),
    )


def admin_view(row: CallRow, now: datetime) -> AdminCall:
    return AdminCall(
        call_id=row.id,
        booking_id=row.booking_id,
        caller_id=row.caller_id,
        callee_id=row.callee_id,
        caller_name=row.caller_name,
        callee_name=row.callee_name,
        caller_side=row.caller_side,
        media=row.media,
        policy=row.policy,
        state=row.state,
        end_reason=row.end_reason,
        ended_by=row.ended_by,
        instance_id=row.instance_id,
        created_at=row.created_at,
        accepted_at=row.accepted_at,
        connected_at=row.connected_at,
        ended_at=row.ended_at,
        duration_ms=duration_ms(row, now),
    )


def event_data(row: CallRow, now: datetime) -> dict[str, Any]:
    """What a state change's trail entry records."""
    data: dict[str, Any] = {"bookingId": row.booking_id, "state": row.state, "media": row.media}
    if row.end_reason is not None:
        data["reason"] = row.end_reason
        data["durationMs"] = duration_ms(row, now)
    return data


def trail_entry(event: CallEventRow) -> AdminCallEvent:
    return AdminCallEvent(
        id=event.id,
        call_id=event.call_id,
        event=event.event,
        actor=event.actor,
        data=event.data,
        at=event.created_at,
    )
