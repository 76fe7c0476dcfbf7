"""The booking state machine, exhaustively: every status × side × action (no loop, no I/O)."""

from __future__ import annotations

import itertools

import pytest

from api.bookings.rules import (
    FINAL,
    Action,
    Side,
    Status,
    TransitionRefused,
    allowed_actions,
    decide,
)

P, C = Side.PROVIDER, Side.CUSTOMER
S = Status

# (status, side, action) -> new status: every allowed move, nothing else.
ALLOWED: dict[tuple[Status, Side, Action], Status] = {
    (S.PENDING, P, Action.ACCEPT): S.ACCEPTED,
    (S.REJECTED, P, Action.ACCEPT): S.ACCEPTED,
    (S.PENDING, P, Action.REJECT): S.REJECTED,
    (S.ACCEPTED, P, Action.REJECT): S.REJECTED,
    (S.ACCEPTED, P, Action.START): S.IN_PROGRESS,
    (S.ACCEPTED, P, Action.COMPLETE): S.COMPLETED,
    (S.IN_PROGRESS, P, Action.COMPLETE): S.COMPLETED,
    (S.PENDING, C, Action.CANCEL): S.CANCELLED,
    (S.REJECTED, C, Action.CANCEL): S.CANCELLED,
}

EVERY = list(itertools.product(Status, Side, Action))


@pytest.mark.parametrize(("status", "side", "action"), EVERY)
def test_every_move_is_allowed_exactly_as_the_table_says(
    status: Status, side: Side, action: Action
) -> None:
    expected = ALLOWED.get((status, side, action))
    if expected is None:
        with pytest.raises(TransitionRefused) as refused:
            decide(status, side, action)
        assert refused.value.status is status and refused.value.action is action
        others_action = action is Action.CANCEL if side is P else action is not Action.CANCEL
        assert refused.value.reason == ("wrong_side" if others_action else "wrong_status")
        return
    transition = decide(status, side, action)
    assert (transition.before, transition.after, transition.actor) == (status, expected, side)
    assert transition.notify is side.other


@pytest.mark.parametrize("status", sorted(FINAL))
def test_completed_and_cancelled_are_final(status: Status) -> None:
    for side in Side:
        assert allowed_actions(status, side) == []


def test_the_customer_cannot_cancel_an_accepted_or_started_job() -> None:
    for status in (S.ACCEPTED, S.IN_PROGRESS):
        with pytest.raises(TransitionRefused):
            decide(status, C, Action.CANCEL)


@pytest.mark.parametrize(("status", "side", "action"), list(ALLOWED))
def test_allowed_actions_lists_the_table(status: Status, side: Side, action: Action) -> None:
    assert action in allowed_actions(status, side)


@pytest.mark.parametrize(
    ("before", "action", "moves"),
    [
        (S.PENDING, Action.ACCEPT, False),  # still open work
        (S.REJECTED, Action.ACCEPT, True),  # open work again
        (S.PENDING, Action.REJECT, True),
        (S.ACCEPTED, Action.START, False),
        (S.ACCEPTED, Action.COMPLETE, True),  # pending down, today up
        (S.IN_PROGRESS, Action.COMPLETE, True),
        (S.PENDING, Action.CANCEL, True),
        (S.REJECTED, Action.CANCEL, False),  # was not open work
    ],
)
def test_which_moves_change_the_providers_earnings(
    before: Status, action: Action, moves: bool
) -> None:
    side = C if action is Action.CANCEL else P
    assert decide(before, side, action).moves_earnings is moves
