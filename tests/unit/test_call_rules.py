"""The call state machine, exhaustively (every state × actor × action), and the rules of
who may call whom: plain calls, no loop, no I/O."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from signalling.rules import (
    ACTIVE,
    REFUSALS,
    Action,
    Actor,
    CallContext,
    CallState,
    EndReason,
    TransitionRefused,
    decide,
    may_signal,
    refusal,
)

R, A, C, E = CallState.RINGING, CallState.ACCEPTED, CallState.CONNECTED, CallState.ENDED
CALLER, CALLEE, SERVER = Actor.CALLER, Actor.CALLEE, Actor.SERVER

# (state, actor, action) -> (new state, end reason): every allowed move, nothing else.
ALLOWED: dict[tuple[CallState, Actor, Action], tuple[CallState, EndReason | None]] = {
    (R, CALLEE, Action.ACCEPT): (A, None),
    (R, CALLEE, Action.REJECT): (E, EndReason.REJECTED),
    (R, CALLER, Action.CANCEL): (E, EndReason.CANCELLED),
    (R, SERVER, Action.TIME_OUT): (E, EndReason.MISSED),
    (R, SERVER, Action.DISCONNECT): (E, EndReason.DISCONNECTED),
    (A, CALLER, Action.HANGUP): (E, EndReason.HANGUP),
    (A, CALLEE, Action.HANGUP): (E, EndReason.HANGUP),
    (A, SERVER, Action.CONNECT): (C, None),
    (A, SERVER, Action.DISCONNECT): (E, EndReason.DISCONNECTED),
    (C, CALLER, Action.HANGUP): (E, EndReason.HANGUP),
    (C, CALLEE, Action.HANGUP): (E, EndReason.HANGUP),
    (C, SERVER, Action.DISCONNECT): (E, EndReason.DISCONNECTED),
}

# Who may take each action at all (from some state).
ACTORS = {
    Action.ACCEPT: {CALLEE},
    Action.REJECT: {CALLEE},
    Action.CANCEL: {CALLER},
    Action.HANGUP: {CALLER, CALLEE},
    Action.CONNECT: {SERVER},
    Action.TIME_OUT: {SERVER},
    Action.DISCONNECT: {SERVER},
}


@pytest.mark.parametrize(
    ("state", "actor", "action"), list(itertools.product(CallState, Actor, Action))
)
def test_every_move_is_allowed_exactly_as_the_table_says(
    state: CallState, actor: Actor, action: Action
) -> None:
    expected = ALLOWED.get((state, actor, action))
    if expected is None:
        with pytest.raises(TransitionRefused) as refused:
            decide(state, actor, action)
        assert refused.value.state is state and refused.value.action is action
        wrong = "wrong_actor" if actor not in ACTORS[action] else "wrong_state"
        assert refused.value.reason == wrong
        return
    t = decide(state, actor, action)
    assert (t.before, t.after, t.reason, t.actor, t.action) == (state, *expected, actor, action)
    assert t.event == f"call.{expected[0].value}"
    assert t.was_answered == (state in {A, C})


def test_ended_is_final_and_every_active_state_can_end() -> None:
    for actor, action in itertools.product(Actor, Action):
        with pytest.raises(TransitionRefused):
            decide(E, actor, action)
    for state in ACTIVE:
        assert decide(state, SERVER, Action.DISCONNECT).after is E


def test_signalling_only_once_answered() -> None:
    assert [s for s in CallState if may_signal(s)] == [A, C]


OK = CallContext(
    booking_status="accepted",
    caller_is_party=True,
    callee_exists=True,
    registration_active=True,
    caller_verified=True,
    callee_verified=True,
)
STATUSES = ("pending", "accepted", "in_progress")


def test_a_party_of_an_open_booking_may_call() -> None:
    for status in STATUSES:
        assert refusal(dataclasses.replace(OK, booking_status=status), STATUSES) is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"caller_is_party": False}, "not_party"),
        ({"callee_exists": False}, "callee_gone"),
        ({"booking_status": "completed"}, "booking_status"),
        ({"booking_status": "cancelled"}, "booking_status"),
        ({"booking_status": "rejected"}, "booking_status"),
        ({"registration_active": False}, "registration_inactive"),
        ({"caller_verified": False}, "caller_not_verified"),
        ({"callee_verified": False}, "callee_not_verified"),
    ],
)
def test_each_rule_refuses_with_its_reason(change: dict[str, object], reason: str) -> None:
    assert refusal(dataclasses.replace(OK, **change), STATUSES) == reason  # type: ignore[arg-type]
    assert REFUSALS[reason]


def test_the_allowed_statuses_are_configurable() -> None:
    done = dataclasses.replace(OK, booking_status="completed")
    assert refusal(done, (*STATUSES, "completed")) is None
