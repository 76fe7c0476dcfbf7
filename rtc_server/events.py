"""Events that are never lost, on the socket side: resuming, gap filling, acknowledging.

Events are stored before anyone sees them (:mod:`kernel.outbox`, :mod:`kernel.publisher`).
A socket that resumes replays the log after the ``seq`` it last saw, while live events
for it wait in its cursor; the cursor then releases them with no gap and no duplicate
at the seam (:mod:`rtc_server.delivery`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from kernel.errors import CloseCode
from kernel.rpc.codec import encode_event
from rtc_server.config import EventSettings
from rtc_server.connection import Connection
from rtc_server.delivery import DeliveryCursor
from rtc_server.hub import Hub
from rtc_server.metrics import Metrics
from rtc_server.session_state import Resumed
from rtc_server.sink import SinkClosed
from storage import events as event_log
from storage.coalesce import Coalesced
from storage.database import Database
from storage.errors import StorageError

log = logging.getLogger("rtc.events")
_NO_EVENTS = event_log.Cursor(0, 0, None)


class EventDelivery:
    """Per-socket replay and gap filling from the log, and acknowledgements."""

    def __init__(self, db: Database, hub: Hub, settings: EventSettings, metrics: Metrics) -> None:
        self._db = db
        self._hub = hub
        self._settings = settings
        self._metrics = metrics
        self._tasks: set[asyncio.Task[None]] = set()
        hub.on_gap = self._schedule_gap_fill
        # Resumes arriving together (a reconnect storm) read their cursors in one
        # query; each from a query started after the socket was attached and routed.
        self._cursors: Coalesced[int, event_log.Cursor] = Coalesced(self._read_cursors, _NO_EVENTS)

    async def _read_cursors(self, user_ids: list[int]) -> dict[int, event_log.Cursor]:
        return await event_log.cursors(self._db, user_ids)

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
            cursor = await self._cursors.get(user_id)
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
        if resumed.resume_from < resumed.last_seq:
            self._spawn(self._replay(conn, resumed.resume_from))
        else:
            # The log held nothing newer when the cursor was read, after the socket
            # was attached: whatever came since reaches the cursor live (or as a gap
            # it fills from the log). No read, no task; still after the answer
            # that is being written, as a replay would be.
            asyncio.get_running_loop().call_soon(self._go_live, conn, resumed.resume_from)

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
                    await conn.sink.send(_frame(stored))
                    after = stored.seq
                self._metrics.events_delivered.labels("replay").inc(len(batch))
                if len(batch) < batch_size:
                    break
        except SinkClosed:
            return
        except StorageError:
            # The client must not stay connected without its events: it reconnects
            # and resumes from its last seq.
            log.warning("replay failed: closing the socket", extra={"user": user_id})
            conn.close(CloseCode.INTERNAL_ERROR, "could not resume: reconnect")
            return
        self._go_live(conn, after)

    def _go_live(self, conn: Connection, after: int) -> None:
        cursor = conn.cursor
        if cursor is None:  # unbound meanwhile
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
