"""Publishing events outside a domain transaction: one event to one or many users.

``publish`` stores the event in each user's log (getting its ``seq``) and only then
hands it to the bus for live delivery: an event a user can see is always durable.
Domain code that changes the database writes its events in its own transaction
instead (:mod:`kernel.outbox`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Protocol

from kernel.bus import Bus, EventBatch
from kernel.events import EventSpec, M
from kernel.metrics import KernelMetrics
from kernel.push import PushPolicy
from storage import events as event_log
from storage.database import Database
from storage.events import Executor

log = logging.getLogger("rtc.events")


# Fan-out writes in flight while a chunk is delivered: two, so that a write that
# waits for its core does not leave PostgreSQL idle while the delivery runs out.
WRITES_AHEAD = 2
# The first chunk of a fan-out: small, so the first recipients wait for a small write.
FIRST_CHUNK = 50


def chunk_sizes(users: int, most: int) -> list[int]:
    """How a fan-out to ``users`` is cut: FIRST_CHUNK, then doubling up to ``most``."""
    sizes: list[int] = []
    size = min(FIRST_CHUNK, most)
    left = users
    while left > 0:
        sizes.append(min(size, left))
        left -= sizes[-1]
        size = min(size * 2, most)
    return sizes


class PushScheduler(Protocol):
    """Push delivery as the publisher sees it (:class:`rtc_server.push.delivery.PushDelivery`)."""

    async def online(self, user_ids: Iterable[int]) -> set[int]: ...

    async def schedule(
        self,
        conn: Executor,
        seqs: Mapping[int, int],
        event: str,
        policy: PushPolicy,
        online: set[int],
    ) -> None: ...


class EventPublisher:
    """What domain code uses to tell users something: ``publish`` and ``publish_many``."""

    def __init__(
        self,
        db: Database,
        bus: Bus,
        metrics: KernelMetrics,
        *,
        chunk: int = 250,
        push: PushScheduler | None = None,
    ) -> None:
        self._db = db
        self._bus = bus
        self._metrics = metrics
        self._chunk = chunk
        self.push = push

    async def publish(
        self,
        user_id: int,
        event: EventSpec[M],
        data: M,
        *,
        push: PushPolicy | None = None,
    ) -> int:
        """Store ``event`` in the user's log and deliver it live; returns its ``seq``.

        With ``push``, the event also goes out as a push notification unless a device
        acknowledges it in time (see :mod:`rtc_server.push.delivery`).
        """
        seqs = await self.publish_many((user_id,), event, data, push=push)
        return seqs[user_id]

    async def publish_many(
        self,
        user_ids: Iterable[int],
        event: EventSpec[M],
        data: M,
        *,
        push: PushPolicy | None = None,
    ) -> dict[int, int]:
        """One event to many users: one statement per chunk of users, not one per user.

        Writing and delivering overlap: while the users of one chunk get the event,
        PostgreSQL (another process, another core) already stores the next ones
        (:func:`chunk_sizes`: a small first chunk, so the first sockets have it after
        one small write, then larger ones up to ``chunk``). The whole fan-out takes
        about the longer of writing and delivering instead of their sum. Every user's
        event is durable before that user can see it. If a write fails, the error
        reaches the caller; users whose chunk was stored get the event from the log
        (gap fill, or when they resume). With ``push``, each chunk's push jobs commit
        with its events (one transaction).
        """
        started = time.time()
        payload = event.encode(data)
        text = payload.decode()
        users = sorted(set(user_ids))
        chunks: list[list[int]] = []
        at = 0
        for size in chunk_sizes(len(users), self._chunk):
            chunks.append(users[at : at + size])
            at += size
        seqs: dict[int, int] = {}
        if not chunks:
            return seqs
        online: set[int] = set()
        if push is not None and self.push is not None:
            online = await self.push.online(users)

        writing: deque[asyncio.Future[dict[int, int]]] = deque()
        queued = iter(chunks)

        def write_ahead() -> bool:
            """Keep WRITES_AHEAD writes in flight; True if one was started."""
            started_one = False
            while len(writing) < WRITES_AHEAD and (chunk := next(queued, None)) is not None:
                writing.append(
                    asyncio.ensure_future(self._append(chunk, event, text, push, online))
                )
                started_one = True
            return started_one

        write_ahead()
        try:
            while writing:
                written = await writing.popleft()
                if write_ahead():
                    # Let the new write send its statement before delivery (synchronous)
                    # occupies the loop: PostgreSQL works on it meanwhile.
                    await asyncio.sleep(0)
                seqs.update(written)
                self._metrics.events_published.inc(len(written))
                await self._deliver(EventBatch(event.name, payload, written, started))
        finally:
            for pending in writing:  # a write failed, or the caller was cancelled
                pending.cancel()
        return seqs

    async def _append(
        self,
        users: list[int],
        event: EventSpec[M],
        text: str,
        push: PushPolicy | None,
        online: set[int],
    ) -> dict[int, int]:
        if push is None or self.push is None:
            return await event_log.append(self._db, users, event.name, text)
        async with self._db.transaction() as conn:
            written = await event_log.append(conn, users, event.name, text)
            await self.push.schedule(conn, written, event.name, push, online)
        return written

    async def _deliver(self, batch: EventBatch) -> None:
        try:
            await self._bus.publish(batch)
        except Exception:
            # Durable already: sockets catch up from the log (gap fill or resume).
            log.exception(
                "bus publish failed; events stay in the log", extra={"event": batch.event}
            )
