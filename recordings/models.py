"""Wire models of recordings: ``recordings.*`` / ``admin.recordings.*`` and the
``recording.*`` events."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from kernel.rpc.cursors import Cursor
from kernel.rpc.registry import Params, Result

Id = Annotated[int, Field(ge=1, le=2**63 - 1)]
LegName = Literal["caller", "callee"]
MAX_PAGE = 50


class RecordingRef(Params):
    recording_id: Id


class LinkParams(Params):
    recording_id: Id
    leg: Literal["caller", "callee", "mixed"] = Field(
        description="whose audio: the caller's, the callee's, or \"mixed\": both in one "
        "file (once made, after the call)"
    )


class ListRecordings(Params):
    call_id: Id | None = None
    cursor: Cursor | None = Field(None, description="nextCursor of the previous page")
    limit: int = Field(20, ge=1, le=MAX_PAGE)


class LegView(Result):
    leg: LegName
    duration_ms: int
    bytes: int
    codec: str
    sha256: str = Field(description="of the file as stored (hex)")
    packets: int = Field(description="RTP packets received from this party")
    lost: int = Field(description="packets that never arrived (silence keeps their time)")
    error: str | None = None
    offset_ms: int = Field(0, description="where the leg starts on the call's timeline")


class MixedView(Result):
    """Both legs in one file, made by a job after the call."""

    duration_ms: int
    bytes: int
    sha256: str


class RecordingView(Result):
    recording_id: int
    call_id: int
    booking_id: int | None
    state: Literal["recording", "ready", "failed", "deleted"]
    error: str | None
    duration_ms: int | None
    started_at: datetime
    ended_at: datetime | None
    legs: list[LegView]
    mixed: MixedView | None = Field(None, description="null until the job made it")


class RecordingPage(Result):
    recordings: list[RecordingView]
    next_cursor: str | None


class RecordingLink(Result):
    url: str = Field(description="GET it (Range requests welcome) before expiresAt")
    expires_at: datetime
    leg: Literal["caller", "callee", "mixed"]


class RecordingReady(Result):
    """A call's recording is finished: ``ready``, or ``failed`` with what went wrong
    (legs that were written are still listed and can be downloaded)."""

    call_id: int
    recording_id: int
    state: Literal["ready", "failed"]
    error: str | None = None
    duration_ms: int
    legs: list[LegView]


class RecordingFailed(Result):
    call_id: int
    recording_id: int
    leg: LegName
    reason: str = Field(description='e.g. "disk full": the call goes on, unrecorded')
