"""The parties' own reports of a call (``calls.report``): how it sounded to them (1 to 5
stars), what their app measured (a few named numbers), why it ended as they saw it.

A report is an entry of the call's trail (event ``report``, actor the party), written
by :class:`signalling.ledger.CallLedger` like every other: admins see it in
``admin.calls.get`` and, live, in ``admin.calls.watch``. Each party reports once, from
the call's end until ``calls.report_window`` after it; the answer commits with the entry
(a retry with the same ``idempotencyKey`` gets it again, never a second entry).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from kernel.clock import Clock
from kernel.errors import Conflict, NotFound, StateConflict
from kernel.outbox import Outbox
from kernel.rpc.registry import Caller
from signalling.ledger import CallLedger
from signalling.models import CallReport, ReportCall
from signalling.settings import CallSettings
from signalling.views import actor_of
from storage import calls
from storage.database import Database

REPORT = "report"  # the trail entry's event


class CallReports:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        ledger: CallLedger,
        clock: Clock,
        settings: CallSettings,
    ) -> None:
        self._db = db
        self._outbox = outbox
        self._ledger = ledger
        self._clock = clock
        self._window = timedelta(seconds=settings.report_window)

    async def report(self, caller: Caller, params: ReportCall) -> CallReport:
        """Report a call you were a party to, once it has ended (once per party)."""
        user_id = caller.require_user()
        now = self._clock.now()
        staged = self._outbox.stage()
        async with self._db.transaction() as conn:
            # Locked: two reports of one party cannot both find none.
            row = await calls.get_call(conn, params.call_id, lock=True)
            actor = actor_of(row, user_id)
            if row is None or actor is None:
                raise NotFound("no such call", field="callId")
            if row.state != "ended" or row.ended_at is None:
                raise StateConflict(
                    f"the call is {row.state}: report it once it has ended",
                    callId=row.id,
                    status=row.state,
                    action="report",
                )
            if now - row.ended_at > self._window:
                raise StateConflict(
                    "the call ended too long ago to be reported",
                    reason="report_window_closed",
                    callId=row.id,
                    status=row.state,
                    action="report",
                )
            if await calls.event_by(conn, row.id, REPORT, actor.value) is not None:
                raise Conflict(
                    "you reported this call already", reason="already_reported", callId=row.id
                )
            data: dict[str, Any] = {"quality": params.quality, "metrics": params.metrics}
            if params.end_reason is not None:
                data["endReason"] = params.end_reason
            entry = await self._ledger.write(conn, row.id, REPORT, actor, data, now)
            answer = CallReport(
                call_id=row.id,
                quality=params.quality,
                metrics=params.metrics,
                end_reason=params.end_reason,
                reported_at=now,
            )
            staged.answer(answer)
            await staged.write(conn)
        await self._ledger.announce(entry)
        return answer
