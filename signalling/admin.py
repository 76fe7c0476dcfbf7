"""Admins and calls: the live stream of every call event (``admin.calls.watch``), the
calls in progress, every call, and one call's full trail.

A watching socket first gets the last ``calls.admin_replay_minutes`` of the trail in
its answer; events streamed meanwhile wait, and follow the answer without repeating
one the replay had (``admin.call.event``, live only: an admin that reconnects watches
again and gets the replay).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from kernel.clock import Clock
from kernel.devices import Devices
from kernel.errors import NotFound
from kernel.rpc.cursors import decode_cursor, next_cursor
from kernel.rpc.registry import Caller
from kernel.sockets import LocalSocket
from signalling.events import ADMIN_CALL_EVENT
from signalling.ledger import CallLedger
from signalling.models import (
    AdminActiveCalls,
    AdminCallDetail,
    AdminCallEvent,
    AdminCallPage,
    AdminWatching,
    CallHistory,
    CallRef,
    WatchCalls,
)
from signalling.settings import CallSettings
from signalling.views import admin_view, trail_entry
from storage import calls
from storage.database import Database

_REPLAY_MAX = 1000
_ACTIVE_LIST_MAX = 500


class AdminCalls:
    def __init__(
        self,
        db: Database,
        devices: Devices,
        ledger: CallLedger,
        clock: Clock,
        settings: CallSettings,
    ) -> None:
        self._db = db
        self._devices = devices
        self._clock = clock
        self._settings = settings
        # Admin sockets of this instance watching: address -> user, and the events
        # that arrived while their replay was being read.
        self._watchers: dict[str, int] = {}
        self._buffering: dict[str, list[AdminCallEvent]] = {}
        ledger.listen(self._stream)
        devices.on_closed(self._socket_closed)

    async def watch(self, caller: Caller, params: WatchCalls) -> AdminWatching:
        """Stream every call event of the platform to this socket (admin.call.event),
        after the last ``calls.admin_replay_minutes`` minutes' events (in the answer)."""
        user_id = caller.require_user()
        address = self._devices.address(caller.connection_id)
        self._watchers[address] = user_id
        self._buffering[address] = []  # live events wait until the replay is answered
        since = self._clock.now() - timedelta(minutes=self._settings.admin_replay_minutes)
        try:
            rows = await calls.events_since(self._db, since, _REPLAY_MAX)
        except BaseException:
            self._forget(address)
            raise
        replayed = [trail_entry(r) for r in rows]
        seen = {r.id for r in rows}
        # Runs right after this answer is written (the dispatcher sends it without
        # awaiting once this returns): what arrived meanwhile follows the replay.
        asyncio.get_running_loop().call_soon(self._go_live, address, user_id, seen)
        return AdminWatching(replayed=replayed)

    def _go_live(self, address: str, user_id: int, seen: set[int]) -> None:
        for event in self._buffering.pop(address, []):
            if event.id not in seen:
                self._devices.send_local(user_id, address, ADMIN_CALL_EVENT, event)

    async def unwatch(self, caller: Caller, params: WatchCalls) -> AdminWatching:
        """Stop this socket's stream of call events."""
        self._forget(self._devices.address(caller.connection_id))
        return AdminWatching(replayed=[])

    def _stream(self, event: AdminCallEvent) -> None:
        for address, user_id in list(self._watchers.items()):
            buffer = self._buffering.get(address)
            if buffer is not None:
                buffer.append(event)
            else:
                self._devices.send_local(user_id, address, ADMIN_CALL_EVENT, event)

    def _socket_closed(self, socket: LocalSocket, address: str) -> None:
        self._forget(address)

    def _forget(self, address: str) -> None:
        self._watchers.pop(address, None)
        self._buffering.pop(address, None)

    async def active(self, caller: Caller, params: WatchCalls) -> AdminActiveCalls:
        """Calls in progress on the platform (ringing, accepted, connected), oldest first."""
        rows = await calls.active_calls(self._db, _ACTIVE_LIST_MAX)
        now = self._clock.now()
        return AdminActiveCalls(calls=[admin_view(r, now) for r in rows])

    async def list_all(self, caller: Caller, params: CallHistory) -> AdminCallPage:
        """Every call on the platform (of one booking or all), newest first."""
        query = ("admin.calls", params.booking_id)
        rows = await calls.history(
            self._db,
            user_id=None,
            booking_id=params.booking_id,
            before_id=decode_cursor(params.cursor, query),
            limit=params.limit + 1,
        )
        now = self._clock.now()
        return AdminCallPage(
            calls=[admin_view(r, now) for r in rows[: params.limit]],
            next_cursor=next_cursor([r.id for r in rows], params.limit, query),
        )

    async def get(self, caller: Caller, params: CallRef) -> AdminCallDetail:
        """One call with its full event trail."""
        row = await calls.get_call(self._db, params.call_id)
        if row is None:
            raise NotFound("no such call", field="callId")
        trail = await calls.events_of(self._db, row.id)
        return AdminCallDetail(
            call=admin_view(row, self._clock.now()), events=[trail_entry(e) for e in trail]
        )
