"""The call state machine and who may call whom: pure, no I/O (tested with plain calls).

.. code-block:: text

                accept              connect (first answer relayed)
    ringing ───────────► accepted ─────────────────────────────► connected
       │                    │                                        │
       │ reject   → ended (rejected)       hangup → ended (hangup)   │
       │ cancel   → ended (cancelled)      disconnect → ended        │
       │ time_out → ended (missed)           (disconnected)  ◄───────┘
       │ disconnect → ended (disconnected)
       ▼
     ended  (final)

The callee accepts or rejects; the caller cancels before an answer; either party
hangs up once accepted. The server times out an unanswered call (``missed``), marks
it connected when the first SDP answer is relayed, and ends it as ``disconnected``
when a party's socket stayed away longer than the reconnect grace.

:func:`decide` takes the call's state, who acts and what they ask, and returns the
:class:`Transition` or raises :class:`TransitionRefused`. :func:`refusal` says why a
user may not call about a booking (or None). The driver (:mod:`signalling.service`)
locks the call's row, calls these, and executes the effects.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass


class CallState(enum.StrEnum):
    RINGING = "ringing"
    ACCEPTED = "accepted"
    CONNECTED = "connected"
    ENDED = "ended"


class Actor(enum.StrEnum):
    CALLER = "caller"
    CALLEE = "callee"
    SERVER = "server"


class Action(enum.StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    CANCEL = "cancel"
    HANGUP = "hangup"
    CONNECT = "connect"
    TIME_OUT = "time_out"
    DISCONNECT = "disconnect"


class EndReason(enum.StrEnum):
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    MISSED = "missed"
    HANGUP = "hangup"
    DISCONNECTED = "disconnected"


ACTIVE = frozenset({CallState.RINGING, CallState.ACCEPTED, CallState.CONNECTED})
ANSWERED = frozenset({CallState.ACCEPTED, CallState.CONNECTED})
_PARTIES = frozenset({Actor.CALLER, Actor.CALLEE})

# action -> (who may take it, the states it applies to, the state it leads to, why it ended)
_RULES: dict[Action, tuple[frozenset[Actor], frozenset[CallState], CallState, EndReason | None]] = {
    Action.ACCEPT: (
        frozenset({Actor.CALLEE}),
        frozenset({CallState.RINGING}),
        CallState.ACCEPTED,
        None,
    ),
    Action.REJECT: (
        frozenset({Actor.CALLEE}),
        frozenset({CallState.RINGING}),
        CallState.ENDED,
        EndReason.REJECTED,
    ),
    Action.CANCEL: (
        frozenset({Actor.CALLER}),
        frozenset({CallState.RINGING}),
        CallState.ENDED,
        EndReason.CANCELLED,
    ),
    Action.HANGUP: (_PARTIES, ANSWERED, CallState.ENDED, EndReason.HANGUP),
    Action.CONNECT: (
        frozenset({Actor.SERVER}),
        frozenset({CallState.ACCEPTED}),
        CallState.CONNECTED,
        None,
    ),
    Action.TIME_OUT: (
        frozenset({Actor.SERVER}),
        frozenset({CallState.RINGING}),
        CallState.ENDED,
        EndReason.MISSED,
    ),
    Action.DISCONNECT: (frozenset({Actor.SERVER}), ACTIVE, CallState.ENDED, EndReason.DISCONNECTED),
}


class TransitionRefused(Exception):
    """``wrong_actor`` (not this actor's action) or ``wrong_state`` (not now)."""

    def __init__(self, reason: str, state: CallState, action: Action) -> None:
        super().__init__(f"cannot {action} a call that is {state}")
        self.reason = reason
        self.state = state
        self.action = action


@dataclass(frozen=True, slots=True)
class Transition:
    before: CallState
    after: CallState
    action: Action
    actor: Actor
    reason: EndReason | None  # set when the call ends

    @property
    def event(self) -> str:
        """The call event both parties get: call.accepted, call.connected, call.ended."""
        return f"call.{self.after.value}"

    @property
    def was_answered(self) -> bool:
        """The call had been answered: it has a duration."""
        return self.before in ANSWERED


def decide(state: CallState, actor: Actor, action: Action) -> Transition:
    who, sources, target, reason = _RULES[action]
    if actor not in who:
        raise TransitionRefused("wrong_actor", state, action)
    if state not in sources:
        raise TransitionRefused("wrong_state", state, action)
    return Transition(before=state, after=target, action=action, actor=actor, reason=reason)


def may_signal(state: CallState) -> bool:
    """Offers, answers and candidates are relayed once the callee's device is known."""
    return state in ANSWERED


# --- Who may call whom -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallContext:
    """What the server knows about a booking and its two parties when a call starts."""

    booking_status: str
    caller_is_party: bool  # the caller is the booking's customer or its provider
    callee_exists: bool  # the other party's account is still there and active
    registration_active: bool  # the provider's registration of the service
    caller_verified: bool
    callee_verified: bool
    # A customer calling about a listing that needs labour access they do not have.
    access_missing: bool = False


# reason -> message. Stable reasons: clients show their own text.
REFUSALS: dict[str, str] = {
    "not_party": "only the booking's customer and provider may call about it",
    "callee_gone": "the other party's account is no longer active",
    "booking_status": "calls are not allowed for a booking in this status",
    "registration_inactive": "the provider's registration for this service is not active",
    "caller_not_verified": "verify your account before calling",
    "callee_not_verified": "the other party's account is not verified",
    "labour_access_required": "calling about labour needs labour access: buy it with "
    "payments.initiate {product: labourAccess}",
}


def refusal(context: CallContext, allowed_statuses: Collection[str]) -> str | None:
    """Why the caller may not call about this booking (a key of REFUSALS), or None."""
    if not context.caller_is_party:
        return "not_party"
    if not context.callee_exists:
        return "callee_gone"
    if context.booking_status not in allowed_statuses:
        return "booking_status"
    if not context.registration_active:
        return "registration_inactive"
    if not context.caller_verified:
        return "caller_not_verified"
    if not context.callee_verified:
        return "callee_not_verified"
    if context.access_missing:
        return "labour_access_required"
    return None
