"""The booking state machine: pure, no I/O (tested with plain calls).

.. code-block:: text

                 accept               start                complete
     pending ───────────► accepted ──────────► in_progress ──────────► completed
       │  ▲                 │  │                                         ▲
       │  │ accept   reject │  └─────────────── complete ────────────────┘
       │  │                 ▼
       │  └──────────── rejected
       │ reject ──────────► ▲
       │                    │ cancel (customer)
       ▼ cancel (customer)  ▼
     cancelled ◄────────────┘

Provider: accept (pending or rejected), reject with a reason (pending or accepted),
start (accepted), complete (accepted or in progress). Customer: cancel, only while
pending or rejected (reference 8.1: an accepted job is the provider's to reject).
Completed and cancelled are final: nobody changes them.

:func:`decide` takes the booking's current status, who acts and what they ask, and
returns the :class:`Transition` (the new status and its effects) or raises
:class:`TransitionRefused`. The asyncio code around it locks the row, calls it, and
executes the effects (store, notify the other side, move earnings).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Status(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class Side(enum.StrEnum):
    CUSTOMER = "customer"
    PROVIDER = "provider"

    @property
    def other(self) -> Side:
        return Side.PROVIDER if self is Side.CUSTOMER else Side.CUSTOMER


class Action(enum.StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    START = "start"
    COMPLETE = "complete"
    CANCEL = "cancel"


FINAL = frozenset({Status.COMPLETED, Status.CANCELLED})
# Work the provider is still to be paid for: earnings' "pending".
OPEN_WORK = frozenset({Status.PENDING, Status.ACCEPTED, Status.IN_PROGRESS})

# action -> (who may take it, the statuses it applies to, the status it leads to)
_RULES: dict[Action, tuple[Side, frozenset[Status], Status]] = {
    Action.ACCEPT: (Side.PROVIDER, frozenset({Status.PENDING, Status.REJECTED}), Status.ACCEPTED),
    Action.REJECT: (Side.PROVIDER, frozenset({Status.PENDING, Status.ACCEPTED}), Status.REJECTED),
    Action.START: (Side.PROVIDER, frozenset({Status.ACCEPTED}), Status.IN_PROGRESS),
    Action.COMPLETE: (
        Side.PROVIDER,
        frozenset({Status.ACCEPTED, Status.IN_PROGRESS}),
        Status.COMPLETED,
    ),
    Action.CANCEL: (Side.CUSTOMER, frozenset({Status.PENDING, Status.REJECTED}), Status.CANCELLED),
}


class TransitionRefused(Exception):
    """The action is not allowed: ``wrong_side`` (not this side's action) or
    ``wrong_status`` (not from the booking's current status)."""

    def __init__(self, reason: str, status: Status, action: Action) -> None:
        super().__init__(f"cannot {action} a booking that is {status}")
        self.reason = reason
        self.status = status
        self.action = action


@dataclass(frozen=True, slots=True)
class Transition:
    before: Status
    after: Status
    action: Action
    actor: Side

    @property
    def notify(self) -> Side:
        """The side told about it (event and notification): the other one."""
        return self.actor.other

    @property
    def moves_earnings(self) -> bool:
        """Whether the provider's earnings (pending, today, this month) change."""
        return (self.before in OPEN_WORK) != (self.after in OPEN_WORK) or (
            self.after is Status.COMPLETED
        )


def allowed_actions(status: Status, side: Side) -> list[Action]:
    """What ``side`` may do to a booking in ``status`` (for apps' buttons)."""
    return [a for a, (who, sources, _) in _RULES.items() if who is side and status in sources]


def decide(status: Status, actor: Side, action: Action) -> Transition:
    who, sources, target = _RULES[action]
    if actor is not who:
        raise TransitionRefused("wrong_side", status, action)
    if status not in sources:
        raise TransitionRefused("wrong_status", status, action)
    return Transition(before=status, after=target, action=action, actor=actor)
