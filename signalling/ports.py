"""Calls and the server's media path: what each may ask of the other.

Signalling owns calls: their state, their trail (``call_events``) and every event
about them. The media path of recorded calls (:mod:`recordings`) is plugged in with
:meth:`Calls.use_media` and talks to calls only through :class:`Calls`; calls talk to
it only through :class:`MediaPath`. Neither imports the other's modules (the import
contracts in ``pyproject.toml`` hold it).

.. code-block:: text

    signalling ── MediaPath.signal(offer | candidate) ──►  recordings
               ◄── Calls.connected / record / announce ──
               ── on_ended(CallEnded) ──────────────────►
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from kernel.feature import PortKey
from signalling.models import AdminCallEvent, CallSignal, Description
from storage.events import Executor

__all__ = [
    "CALLS",
    "CallEnded",
    "CallNote",
    "CallParties",
    "CallSignal",
    "Calls",
    "Description",
    "MediaPath",
]

#: An entry of a call's trail, as :meth:`Calls.record` wrote it.
CallNote = AdminCallEvent


@dataclass(frozen=True, slots=True)
class CallEnded:
    """A call ended (any instance may have ended it)."""

    call_id: int


@dataclass(frozen=True, slots=True)
class CallParties:
    call_id: int
    caller_id: int | None  # None: the account is gone
    callee_id: int | None
    ended: bool


class MediaPath(Protocol):
    """What calls ask of the server's media path (``recordings.host.MediaHost``): it
    answers each party's offer, forwards the audio and records it, on the instance the
    call was started on."""

    @property
    def enabled(self) -> bool: ...

    @property
    def notice(self) -> bool:
        """Tell both parties the call is recorded."""
        ...

    @property
    def max_calls(self) -> int:
        """Recorded calls one instance carries at most."""
        ...

    async def open_calls(self, conn: Executor, instance_id: str) -> int:
        """Recorded calls whose media ``instance_id`` carries now (in the caller's
        transaction, which holds that instance's lock)."""
        ...

    async def signal(
        self,
        *,
        call_id: int,
        instance_id: str,
        leg: str,
        user_id: int,
        device: str,
        description: dict[str, str] | None,
        candidate: dict[str, Any] | None,
    ) -> None:
        """Take a party's offer (answered with ``call.signal`` to ``device``) or ICE
        candidate for the call's media on ``instance_id``."""


class Calls(Protocol):
    """What other features may ask of calls."""

    def use_media(self, media: MediaPath) -> None:
        """Carry recorded calls through ``media`` (without one they are refused)."""

    def on_ended(self, listener: Callable[[CallEnded], None]) -> None:
        """Run ``listener`` (plain, quick) on every instance for every call that ends."""

    async def parties(
        self, conn: Executor, call_id: int, *, lock: bool = False
    ) -> CallParties | None:
        """Who is in the call; with ``lock``, no change of the call can commit until the
        caller's transaction does."""

    async def ended_among(self, call_ids: list[int]) -> list[int]:
        """Which of ``call_ids`` have ended."""

    async def record(
        self, conn: Executor, call_id: int, event: str, data: dict[str, Any], now: datetime
    ) -> CallNote:
        """Add an entry of the server's to the call's trail, in the caller's transaction."""

    async def announce(self, note: CallNote) -> None:
        """After the commit: stream a recorded entry to admins."""

    async def connected(self, call_id: int) -> None:
        """The media path connected both parties (the call's ``connect`` transition)."""

    async def tell_device(self, user_id: int, device: str, signal: CallSignal) -> None:
        """Send ``call.signal`` to one party's device, wherever its socket is."""


#: The port by which other features reach calls (provided by the calls feature).
CALLS: PortKey[Calls] = PortKey("calls")
