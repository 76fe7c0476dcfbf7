"""Masked calls (methods ``calls.*`` and ``admin.calls.*``; events ``call.*``): one face
for the parts of the call service, and the :class:`signalling.ports.Calls` port that
other features use.

=====================  ====================================================
:mod:`.lifecycle`      start, accept, reject, cancel, hang up; every transition
:mod:`.relay`          offers, answers and candidates between the parties' devices
:mod:`.presence`       dropped sockets, resume, the sweep of deadlines and graces
:mod:`.admin`          the live stream of call events, active calls, trails
:mod:`.reports`        the parties' reports of a call (``calls.report``)
:mod:`.ledger`         the trail (``call_events``) and its stream: one writer
:mod:`.views`          rows to wire models
=====================  ====================================================
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from kernel.clock import Clock
from kernel.devices import Devices
from kernel.outbox import Outbox
from kernel.rpc.cursors import decode_cursor, next_cursor
from kernel.rpc.registry import Access, Caller, MethodRegistry
from kernel.signals import Signals
from signalling import events
from signalling.admin import AdminCalls
from signalling.ledger import CallLedger
from signalling.lifecycle import CallLifecycle
from signalling.metrics import CallMetrics
from signalling.models import (
    AdminActiveCalls,
    AdminCallDetail,
    AdminCallEvent,
    AdminCallPage,
    AdminWatching,
    CallHistory,
    CallPage,
    CallRef,
    CallReport,
    CallSignal,
    CallStarted,
    CallStep,
    CallView,
    RejectCall,
    Relayed,
    ReportCall,
    Resumed,
    SignalParams,
    StartCall,
    WatchCalls,
)
from signalling.ports import CallEnded, CallNote, CallParties, MediaPath
from signalling.presence import CallPresence
from signalling.relay import SignalRelay
from signalling.reports import CallReports
from signalling.settings import CallSettings
from signalling.views import view
from storage import calls
from storage.database import Database
from storage.events import Executor

PARTIES = frozenset({"customer", "provider"})


class CallService:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        devices: Devices,
        signals: Signals,
        clock: Clock,
        settings: CallSettings,
        metrics: CallMetrics,
        *,
        online: Callable[[set[int]], Awaitable[set[int]]],
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._devices = devices
        self._clock = clock
        self.ledger = CallLedger(signals)
        in_calls: set[str] = set()
        self.lifecycle = CallLifecycle(
            db, outbox, devices, self.ledger, clock, settings, metrics, in_calls=in_calls, wall=wall
        )
        self.relay = SignalRelay(db, devices, self.lifecycle, settings, metrics)
        self.presence = CallPresence(
            db,
            devices,
            self.lifecycle,
            self.ledger,
            clock,
            settings,
            in_calls=in_calls,
            online=online,
        )
        self.admin = AdminCalls(db, devices, self.ledger, clock, settings)
        self.reports = CallReports(db, outbox, self.ledger, clock, settings)
        self._ended: list[Callable[[CallEnded], None]] = []
        self.ledger.listen(self._tell_ended)

    @property
    def policy(self) -> str:
        """The ICE policy of new calls: "open" or "relay-only"."""
        return self.lifecycle.policy.value

    def register(self, registry: MethodRegistry) -> None:
        add = registry.add
        life = self.lifecycle
        add("calls.start", life.start, params=StartCall, result=CallStarted, roles=PARTIES)
        add("calls.accept", life.accept, params=CallStep, result=CallView, roles=PARTIES)
        add("calls.reject", life.reject, params=RejectCall, result=CallView, roles=PARTIES)
        add("calls.cancel", life.cancel, params=CallStep, result=CallView, roles=PARTIES)
        add("calls.hangup", life.hangup, params=CallStep, result=CallView, roles=PARTIES)
        add("calls.signal", self.relay.signal, params=SignalParams, result=Relayed, roles=PARTIES)
        add("calls.resume", self.presence.resume, params=CallRef, result=Resumed, roles=PARTIES)
        add("calls.history", self.history, params=CallHistory, result=CallPage, roles=PARTIES)
        add(
            "calls.report",
            self.reports.report,
            params=ReportCall,
            result=CallReport,
            roles=PARTIES,
        )
        admin, access = self.admin, Access.ADMIN
        add(
            "admin.calls.watch", admin.watch, params=WatchCalls, result=AdminWatching, access=access
        )
        add(
            "admin.calls.unwatch",
            admin.unwatch,
            params=WatchCalls,
            result=AdminWatching,
            access=access,
        )
        add(
            "admin.calls.active",
            admin.active,
            params=WatchCalls,
            result=AdminActiveCalls,
            access=access,
        )
        add(
            "admin.calls.list",
            admin.list_all,
            params=CallHistory,
            result=AdminCallPage,
            access=access,
        )
        add("admin.calls.get", admin.get, params=CallRef, result=AdminCallDetail, access=access)

    async def history(self, caller: Caller, params: CallHistory) -> CallPage:
        """Your calls (made and received), of one booking or all, newest first."""
        user_id = caller.require_user()
        query = ("calls", params.booking_id)
        rows = await calls.history(
            self._db,
            user_id=user_id,
            booking_id=params.booking_id,
            before_id=decode_cursor(params.cursor, query),
            limit=params.limit + 1,
        )
        now = self._clock.now()
        return CallPage(
            calls=[view(r, user_id, now) for r in rows[: params.limit]],
            next_cursor=next_cursor([r.id for r in rows], params.limit, query),
        )

    # --- Background work -----------------------------------------------------------------

    async def sweep(self) -> int:
        return await self.presence.sweep()

    async def check_presence(self) -> int:
        return await self.presence.check_presence()

    async def run_sweeps(self) -> None:
        await self.presence.run_sweeps()

    async def close(self) -> None:
        await self.presence.close()

    # --- The Calls port (signalling.ports) ------------------------------------------------

    def use_media(self, media: MediaPath) -> None:
        self.lifecycle.media = media

    def on_ended(self, listener: Callable[[CallEnded], None]) -> None:
        self._ended.append(listener)

    def _tell_ended(self, event: AdminCallEvent) -> None:
        if event.event == "ended":
            ended = CallEnded(event.call_id)
            for listener in self._ended:
                listener(ended)

    async def parties(
        self, conn: Executor, call_id: int, *, lock: bool = False
    ) -> CallParties | None:
        row = await calls.get_call(conn, call_id, lock=lock)
        if row is None:
            return None
        return CallParties(row.id, row.caller_id, row.callee_id, ended=row.state == "ended")

    async def ended_among(self, call_ids: list[int]) -> list[int]:
        return await calls.ended_among(self._db, call_ids)

    async def record(
        self, conn: Executor, call_id: int, event: str, data: dict[str, Any], now: datetime
    ) -> CallNote:
        return await self.ledger.write(conn, call_id, event, "server", data, now)

    async def announce(self, note: CallNote) -> None:
        await self.ledger.announce(note)

    async def connected(self, call_id: int) -> None:
        await self.lifecycle.connect(call_id)

    async def tell_device(self, user_id: int, device: str, signal: CallSignal) -> None:
        await self._devices.send(user_id, device, events.CALL_SIGNAL, signal)
