"""Wire models of calls: the params of ``calls.*`` and ``admin.calls.*``, and the call
events. A party never sees the other's phone number, user id or network address:
``from`` / ``other`` carry a display name and a role only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, model_validator

from kernel.rpc.cursors import Cursor
from kernel.rpc.registry import IdempotentParams, Params, Result
from kernel.rpc.text import Line, invalid

Id = Annotated[int, Field(ge=1, le=2**63 - 1)]
MAX_PAGE = 50
StateName = Literal["ringing", "accepted", "connected", "ended"]
ReasonName = Literal["rejected", "cancelled", "missed", "hangup", "disconnected"]
PolicyName = Literal["open", "relay-only"]


# --- Params ------------------------------------------------------------------------------


class StartCall(IdempotentParams):
    booking_id: Id
    media: Literal["direct", "recorded"] = Field(
        "direct",
        description='"direct": peer to peer (or through TURN); "recorded": each party '
        "offers to the server, which answers, forwards the audio and records both legs",
    )


class CallRef(Params):
    call_id: Id


class CallStep(IdempotentParams):
    """accept, cancel, hangup."""

    call_id: Id


class RejectCall(IdempotentParams):
    call_id: Id
    reason: Annotated[str, Line(1, 200)] | None = None


class Description(Params):
    type: Literal["offer", "answer"]
    sdp: str = Field(min_length=1, max_length=65536)


class Candidate(Params):
    # "" is the end-of-candidates indication (RFC 8838 section 13).
    candidate: str = Field(max_length=1024)
    sdp_mid: str | None = Field(None, max_length=64)
    sdp_m_line_index: int | None = Field(None, ge=0, le=64)
    username_fragment: str | None = Field(None, max_length=256)


class SignalParams(Params):
    call_id: Id
    description: Description | None = None
    candidate: Candidate | None = None

    @model_validator(mode="after")
    def _one(self) -> SignalParams:
        if (self.description is None) == (self.candidate is None):
            raise invalid(("params", "exactly one of description and candidate"))
        return self


class CallHistory(Params):
    booking_id: Id | None = None
    cursor: Cursor | None = Field(None, description="nextCursor of the previous page")
    limit: int = Field(20, ge=1, le=MAX_PAGE)


class WatchCalls(Params):
    pass


# calls.report: what a party's app measured of a call, bounded.
MAX_METRICS = 16
MetricName = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z][A-Za-z0-9_]*$")]
MetricValue = Annotated[float, Field(ge=-1e9, le=1e9, allow_inf_nan=False)]


class ReportCall(IdempotentParams):
    call_id: Id
    quality: int = Field(ge=1, le=5, description="the user's rating: 1 (bad) to 5 (excellent)")
    metrics: dict[MetricName, MetricValue] = Field(
        default_factory=dict,
        max_length=MAX_METRICS,
        description="numbers the app measured (rttMs, jitterMs, packetLoss, bitrateKbps ...): "
        f"at most {MAX_METRICS}, names of 1-32 letters, digits and _",
    )
    end_reason: Annotated[str, Line(1, 100)] | None = Field(
        None, description="why the call ended, as the app saw it (ice_failed, user_hangup ...)"
    )


# --- Results and events ------------------------------------------------------------------


class IceServerModel(Result):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class MaskedParty(Result):
    """Who is on the other end: never a phone number, never a user id."""

    display_name: str
    role: Literal["customer", "provider"]
    avatar: str | None = None


class CallStarted(Result):
    call_id: int
    ice_servers: list[IceServerModel]
    policy: PolicyName = Field(
        description='"relay-only": set iceTransportPolicy "relay"; only TURN relay '
        "candidates are relayed"
    )
    ring_timeout_ms: int
    recording_notice: bool = Field(
        False, description="the call is recorded: the app should say so to its user"
    )


class CallIncoming(Result):
    call_id: int
    booking_id: int
    media: Literal["direct", "recorded"]
    from_: MaskedParty = Field(alias="from")
    ice_servers: list[IceServerModel]
    policy: PolicyName
    ring_timeout_ms: int
    recording_notice: bool = Field(
        False, description="the call is recorded: the app should say so to its user"
    )


class CallView(Result):
    """A call as one of its parties sees it."""

    call_id: int
    booking_id: int | None
    direction: Literal["outgoing", "incoming"]
    other: MaskedParty
    media: Literal["direct", "recorded"]
    state: StateName
    end_reason: ReasonName | None
    created_at: datetime
    accepted_at: datetime | None
    ended_at: datetime | None
    duration_ms: int


class CallChange(Result):
    """call.ringing, call.accepted, call.connected, call.ended: to both parties."""

    call: CallView
    ended_by: Literal["you", "other", "server"] | None = None


class AnsweredElsewhere(Result):
    call_id: int


class CallSignal(Result):
    call_id: int
    description: Description | None = None
    candidate: Candidate | None = None
    error: str | None = Field(
        None,
        description="recorded calls: why the server could not take this device's offer "
        "(send a new one)",
    )


class Relayed(Result):
    relayed: bool
    dropped: str | None = Field(
        None, description="why the server did not relay it (address privacy)"
    )


class CallPage(Result):
    calls: list[CallView]
    next_cursor: str | None


class Resumed(Result):
    call: CallView
    ice_servers: list[IceServerModel]
    policy: PolicyName


class CallReport(Result):
    """A party's report of a call (one per party, kept in the call's trail)."""

    call_id: int
    quality: int
    metrics: dict[str, float]
    end_reason: str | None
    reported_at: datetime


# --- Admins ------------------------------------------------------------------------------


class AdminCall(Result):
    call_id: int
    booking_id: int | None
    caller_id: int | None
    callee_id: int | None
    caller_name: str | None
    callee_name: str | None
    caller_side: Literal["customer", "provider"]
    media: Literal["direct", "recorded"]
    policy: PolicyName
    state: StateName
    end_reason: ReasonName | None
    ended_by: Literal["caller", "callee", "server"] | None
    instance_id: str
    created_at: datetime
    accepted_at: datetime | None
    connected_at: datetime | None
    ended_at: datetime | None
    duration_ms: int


class AdminCallEvent(Result):
    """One entry of a call's trail (and of admin.call.event)."""

    id: int
    call_id: int
    event: str
    actor: Literal["caller", "callee", "server"]
    data: dict[str, object]
    at: datetime


class AdminCallDetail(Result):
    call: AdminCall
    events: list[AdminCallEvent]


class AdminActiveCalls(Result):
    calls: list[AdminCall]


class AdminCallPage(Result):
    calls: list[AdminCall]
    next_cursor: str | None


class AdminWatching(Result):
    replayed: list[AdminCallEvent] = Field(
        description="the last minutes' call events, oldest first; live ones follow as "
        "admin.call.event"
    )
