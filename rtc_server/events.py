"""Events that are never lost: publishing, resuming, gap filling, acknowledging, pruning.

``publish`` stores the event in the user's log (getting its ``seq``) and only then
hands it to the bus for live delivery. A socket that resumes replays the log after the
``seq`` it last saw, while live events for it wait in its cursor; the cursor then
releases them with no gap and no duplicate at the seam (:mod:`rtc_server.delivery`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import orjson
from pydantic import BaseModel
from websockets.exceptions import ConnectionClosed

from rtc_server.bus import Bus, EventBatch
from rtc_server.config import EventSettings
from rtc_server.connection import Connection
from rtc_server.delivery import DeliveryCursor
from rtc_server.errors import CloseCode
from rtc_server.hub import Hub
from rtc_server.metrics import Metrics
from rtc_server.push.notice import PushPolicy
from rtc_server.rpc.codec import encode_event
from rtc_server.session_state import Resumed
from storage import events as event_log
from storage.database import Database
from storage.errors import StorageError
from storage.events import Executor

log = logging.getLogger("rtc.events")


def encode_payload(data: BaseModel | Mapping[str, Any]) -> bytes:
    if isinstance(data, BaseModel):
        return data.__pydantic_serializer__.to_json(data, by_alias=True)
    return orjson.dumps(data)


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
        metrics: Metrics,
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
        event: str,
        data: BaseModel | Mapping[str, Any],
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
        event: str,
        data: BaseModel | Mapping[str, Any],
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
        payload = encode_payload(data)
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
                await self._deliver(EventBatch(event, payload, written, started))
        finally:
            for pending in writing:  # a write failed, or the caller was cancelled
                pending.cancel()
        return seqs

    async def _append(
        self, users: list[int], event: str, text: str, push: PushPolicy | None, online: set[int]
    ) -> dict[int, int]:
        if push is None or self.push is None:
            return await event_log.append(self._db, users, event, text)
        async with self._db.transaction() as conn:
            written = await event_log.append(conn, users, event, text)
            await self.push.schedule(conn, written, event, push, online)
        return written

    async def _deliver(self, batch: EventBatch) -> None:
        try:
            await self._bus.publish(batch)
        except Exception:
            # Durable already: sockets catch up from the log (gap fill or resume).
            log.exception(
                "bus publish failed; events stay in the log", extra={"event": batch.event}
            )


class EventDelivery:
    """Per-socket replay and gap filling from the log, and acknowledgements."""

    def __init__(self, db: Database, hub: Hub, settings: EventSettings, metrics: Metrics) -> None:
        self._db = db
        self._hub = hub
        self._settings = settings
        self._metrics = metrics
        self._tasks: set[asyncio.Task[None]] = set()
        hub.on_gap = self._schedule_gap_fill

    async def resume(self, conn: Connection, last_seq: int | None) -> Resumed:
        """Attach ``conn`` to its user's events; decide where its replay starts.

        Live events are buffered from this moment on, so the log read that follows
        cannot miss one committed in between. ``last_seq`` None resumes after the
        user's last acknowledged event. Call :meth:`start_replay` once the answer is
        on its way to the client.
        """
        user_id = conn.user_id
        assert user_id is not None
        conn.cursor = DeliveryCursor()
        self._hub.attach(conn)
        try:
            # With several instances, the bus must route the user's events here
            # before the log is read, or one committed in between would be missed.
            await self._hub.routed(user_id)
            cursor = await event_log.cursor(self._db, user_id)
        except BaseException:
            self._hub.detach(conn)
            conn.unbind()
            raise
        start = cursor.acked_seq if last_seq is None else last_seq
        oldest_kept = cursor.first_seq if cursor.first_seq is not None else cursor.last_seq + 1
        if start > cursor.last_seq or start < oldest_kept - 1:
            # The client is ahead of the log (a reset database) or behind what is
            # kept: it must refetch its state; live events continue from now.
            return Resumed(False, cursor.last_seq, cursor.last_seq)
        return Resumed(True, start, cursor.last_seq)

    def start_replay(self, conn: Connection, resumed: Resumed) -> None:
        self._spawn(self._replay(conn, resumed.resume_from))

    async def _replay(self, conn: Connection, after: int) -> None:
        user_id = conn.user_id
        cursor = conn.cursor
        assert user_id is not None and cursor is not None
        batch_size = self._settings.replay_batch
        try:
            while not conn.closing:
                batch = await event_log.read_after(self._db, user_id, after, batch_size)
                for stored in batch:
                    # send() waits while the client's buffer is full: a replay
                    # follows the client's reading speed.
                    await conn.ws.send(_frame(stored), text=True)
                    after = stored.seq
                self._metrics.events_delivered.labels("replay").inc(len(batch))
                if len(batch) < batch_size:
                    break
        except ConnectionClosed:
            return
        except StorageError:
            # The client must not stay connected without its events: it reconnects
            # and resumes from its last seq.
            log.warning("replay failed: closing the socket", extra={"user": user_id})
            conn.close(CloseCode.INTERNAL_ERROR, "could not resume: reconnect")
            return
        for frame in cursor.start_live(after):
            conn.send(frame)
        if cursor.has_gap:
            self._schedule_gap_fill(conn)

    def _schedule_gap_fill(self, conn: Connection) -> None:
        if conn.gap_timer is not None or conn.closing:
            return
        loop = asyncio.get_running_loop()
        conn.gap_timer = loop.call_later(
            self._settings.gap_timeout, lambda: self._spawn(self._fill_gap(conn))
        )

    async def _fill_gap(self, conn: Connection) -> None:
        conn.gap_timer = None
        cursor = conn.cursor
        user_id = conn.user_id
        if cursor is None or user_id is None or conn.closing or not cursor.has_gap:
            return
        after, upto = cursor.gap()
        try:
            stored = await event_log.read_after(self._db, user_id, after, upto - after, upto)
        except StorageError:
            log.warning("gap fill failed; retrying", extra={"user": user_id})
            self._schedule_gap_fill(conn)
            return
        self._metrics.event_gap_fills.inc()
        for frame in cursor.fill([(s.seq, _frame(s)) for s in stored], upto):
            conn.send(frame)
        if cursor.has_gap:
            self._schedule_gap_fill(conn)

    async def catch_up(self) -> None:
        """Send every socket what the log has beyond what it was offered.

        Run when the bus comes back after an outage: events published on other
        instances meanwhile never arrived live, and nothing else would tell a socket
        that it is behind until the user's next event.
        """
        by_user: dict[int, list[Connection]] = {}
        for user_id in list(self._hub.users()):
            conns = [c for c in self._hub.sockets_of(user_id) if c.cursor is not None]
            if conns:
                by_user[user_id] = conns
        users = list(by_user)
        behind = 0
        for start in range(0, len(users), 1000):
            chunk = users[start : start + 1000]
            try:
                last = await event_log.last_seqs(self._db, chunk)
            except StorageError:
                log.warning("catch-up: could not read the log", extra={"users": len(chunk)})
                continue
            for user_id, last_seq in last.items():
                for conn in by_user[user_id]:
                    cursor = conn.cursor
                    if cursor is None or conn.closing or last_seq <= cursor.highest:
                        continue
                    cursor.highest = last_seq  # owed: a replay ending below it fills later
                    behind += 1
                    if not cursor.replaying and conn.gap_timer is None:
                        self._spawn(self._fill_gap(conn))
        self._metrics.bus_catch_ups.inc(behind)
        log.info("caught up after the bus came back", extra={"sockets_behind": behind})

    async def acknowledge(self, conn: Connection, seq: int) -> int:
        user_id = conn.user_id
        assert user_id is not None
        return await event_log.acknowledge(self._db, user_id, seq)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _frame(stored: event_log.StoredEvent) -> bytes:
    return encode_event(orjson.dumps(stored.event), stored.seq, stored.payload.encode())
