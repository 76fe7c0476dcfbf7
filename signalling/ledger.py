"""A call's trail (``call_events``) and its live stream: the one writer of both.

Every change of a call writes one trail entry in the transaction that makes the change
(:meth:`CallLedger.write`). After the commit, :meth:`CallLedger.announce` streams it
to every instance (a bus signal, not durable: the trail is), where the listeners hear
it: admins watching (:mod:`signalling.admin`) and, through
:class:`signalling.ports.Calls`, the media path of recorded calls. Other features add
to a call's trail through that port (recordings: ``recording.ready``), never the table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from kernel.bus import Signal
from kernel.signals import Signals
from signalling.models import AdminCallEvent
from signalling.views import trail_entry
from storage import calls
from storage.events import Executor

log = logging.getLogger("rtc.calls")

TOPIC = "calls.event"

Listener = Callable[[AdminCallEvent], None]


class CallLedger:
    def __init__(self, signals: Signals) -> None:
        self._signals = signals
        self._listeners: list[Listener] = []
        signals.subscribe(TOPIC, self._received)

    async def write(
        self,
        conn: Executor,
        call_id: int,
        event: str,
        actor: str,
        data: dict[str, Any],
        now: datetime,
    ) -> AdminCallEvent:
        """Add an entry to the call's trail, in the caller's transaction."""
        return trail_entry(await calls.insert_event(conn, call_id, event, actor, data, now))

    async def announce(self, event: AdminCallEvent) -> None:
        """After the commit: tell every instance's listeners."""
        try:
            await self._signals.publish(TOPIC, event.model_dump(mode="json", by_alias=True))
        except Exception:  # noqa: BLE001 - the live view only; the trail is stored
            log.exception("could not stream a call event", extra={"call": event.call_id})

    def listen(self, listener: Listener) -> None:
        """Run ``listener`` (plain, quick) for every call event of the platform."""
        self._listeners.append(listener)

    def _received(self, signal: Signal) -> None:
        try:
            event = AdminCallEvent.model_validate(signal.data)
        except ValidationError:
            log.warning("unreadable call event", extra={"data": str(signal.data)[:200]})
            return
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - one listener must not stop the others
                log.exception("call event listener failed")
