"""Events that commit with the domain change that caused them.

A booking's offer must never be lost: if ``bookings.create`` answers, the provider's
``booking.offered`` is in their event log. So domain code writes its events inside its
own transaction (as the last statement before the commit) and delivers them live only
after the commit::

    staged = outbox.stage()
    async with db.transaction() as conn:
        ...                                   # the change itself
        staged.add(provider_id, BOOKING_OFFERED, offer, push_after=30.0, now=now)
        await staged.write(conn)              # one statement for every event
    await staged.deliver()                    # live, to every socket of each user

If the process dies between the commit and the delivery, sockets catch up from the log
(gap fill, resume) exactly as after a lost bus message. With :meth:`StagedEvents.answer`
the method's result is stored for its ``idempotencyKey`` by the same statement
(:func:`kernel.idempotency.pending_result`): a retry gets exactly what committed. Compare
:class:`rtc_server.events.EventPublisher`, which writes in a transaction of its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel

from kernel.bus import Bus, EventBatch
from kernel.events import EventSpec, M
from kernel.idempotency import pending_result
from kernel.metrics import KernelMetrics
from storage import events as event_log
from storage.events import Executor

log = logging.getLogger("rtc.events")


@dataclass(slots=True)
class _Staged:
    user_id: int
    event: str
    payload: bytes
    push_due: datetime | None
    fill: bool


# A statement of the caller's that stores the events and the answer with its change
# (:meth:`StagedEvents.write_by`): it returns their seqs, and what it filled in the
# payloads flagged ``fill`` (stand-in -> value, as JSON text).
EventStatement = Callable[
    [list[event_log.NewEvent], event_log.Answer | None],
    Awaitable[tuple[list[int], Mapping[bytes, bytes]]],
]


class StagedEvents:
    """The events of one transaction: :meth:`add`, then :meth:`write`, then :meth:`deliver`."""

    def __init__(self, bus: Bus, metrics: KernelMetrics) -> None:
        self._bus = bus
        self._metrics = metrics
        self._items: list[_Staged] = []
        self._seqs: list[int] | None = None
        self._answer: bytes | None = None

    def add(
        self,
        user_id: int,
        event: EventSpec[M],
        data: M,
        *,
        push_after: float | None = None,
        now: datetime | None = None,
        fill: bool = False,
    ) -> None:
        """Stage ``event`` for ``user_id``; ``data`` must be the spec's model. With
        ``push_after`` (seconds from ``now``) it is also marked to go out as a push if no
        device acknowledged it by then. With ``fill``, a statement given to
        :meth:`write_by` may complete its payload."""
        due = None
        if push_after is not None:
            assert now is not None, "push_after needs now"
            due = now + timedelta(seconds=push_after)
        if not event.logged:
            raise ValueError(f"{event.name} is live only: send it with Devices")
        self._items.append(_Staged(user_id, event.name, event.encode(data), due, fill))

    def __len__(self) -> int:
        return len(self._items)

    def answer(self, result: BaseModel) -> None:
        """The method's result: :meth:`write` also stores it for the ``idempotencyKey``
        of the call (if it has one). Return exactly this result."""
        self._answer = result.__pydantic_serializer__.to_json(result, by_alias=True)

    async def write(self, conn: Executor) -> None:
        """Store every staged event (and the answer), inside the caller's transaction."""

        async def append(
            events: list[event_log.NewEvent], answer: event_log.Answer | None
        ) -> tuple[list[int], Mapping[bytes, bytes]]:
            return await event_log.append_each(conn, events, answer=answer), {}

        await self.write_by(append)

    async def write_by(self, statement: EventStatement) -> None:
        """Like :meth:`write`, by a statement of the caller's that also makes its change
        (one round trip for both): see :data:`EventStatement`."""
        pending = pending_result() if self._answer is not None else None
        events = [
            event_log.NewEvent(i.user_id, i.event, i.payload.decode(), i.push_due, i.fill)
            for i in self._items
        ]
        answer = None
        if pending is not None and self._answer is not None:
            answer = event_log.Answer(pending.user_id, pending.key, self._answer.decode())
        self._seqs, filled = await statement(events, answer)
        if pending is not None:
            pending.stored = True  # if the transaction rolls back, the key is released
        for item in self._items:
            if item.fill:
                for stand_in, value in filled.items():
                    item.payload = item.payload.replace(stand_in, value)

    async def deliver(self) -> None:
        """After the commit: hand each event to the bus for the users' sockets."""
        if self._seqs is None:
            raise RuntimeError("deliver() before write()")
        started = time.time()
        self._metrics.events_published.inc(len(self._items))
        for item, seq in zip(self._items, self._seqs, strict=True):
            batch = EventBatch(item.event, item.payload, {item.user_id: seq}, started)
            try:
                await self._bus.publish(batch)
            except Exception:
                # Durable already: sockets catch up from the log (gap fill or resume).
                log.exception(
                    "bus publish failed; events stay in the log", extra={"event": item.event}
                )


class Outbox:
    """Hands domain code a :class:`StagedEvents` per transaction."""

    def __init__(self, bus: Bus, metrics: KernelMetrics) -> None:
        self._bus = bus
        self._metrics = metrics

    def stage(self) -> StagedEvents:
        return StagedEvents(self._bus, self._metrics)
