"""What a socket is told when it is bound to a user: the answer of
``session.authenticate`` and the ``session.ready`` notification (header login)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import Field

from kernel.identity import Identity
from kernel.rpc.registry import Result


class SessionState(Result):
    user_id: int
    role: str
    session_id: str
    access_token_expires_at: datetime
    recovered: bool = Field(
        description="False: events after lastSeq are no longer kept; refetch state"
    )
    resume_from: int = Field(description="Events after this seq are replayed, then live ones")
    last_seq: int = Field(description="The newest event seq known when the socket was bound")


@dataclass(frozen=True, slots=True)
class Resumed:
    """Where a socket's events resume."""

    recovered: bool  # False: the log no longer holds everything after the asked seq
    resume_from: int  # replay starts after this seq
    last_seq: int  # the user's newest seq when the resume started


def session_state(identity: Identity, resumed: Resumed) -> SessionState:
    return SessionState(
        user_id=identity.user_id,
        role=identity.role,
        session_id=str(identity.session_id),
        access_token_expires_at=datetime.fromtimestamp(identity.expires_at, UTC),
        recovered=resumed.recovered,
        resume_from=resumed.resume_from,
        last_seq=resumed.last_seq,
    )
