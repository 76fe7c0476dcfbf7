"""Reports (method ``reports.create``; ``admin.reports.list`` and ``admin.reports.setStatus``
for admins; reference 1.5, 8.4).

Either side of a booking may report the other, once per booking and side, at most
``bookings.reports_per_day`` (5) reports per rolling 24 hours. The reported side is not
told (as in the original); admins review reports and set them resolved or closed.
The original's provider reports named the customer by a fuzzy name match: here a
report always belongs to a booking, so it names exactly its two parties.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import Field

from api.bookings.rules import Side
from api.bookings.service import party, side_of
from api.bookings.settings import BookingSettings
from kernel.clock import Clock
from kernel.errors import Conflict, NotFound, RateLimited
from kernel.rpc.cursors import Cursor, decode_cursor, next_cursor
from kernel.rpc.registry import Access, Caller, IdempotentParams, MethodRegistry, Params, Result
from kernel.rpc.text import Line, Paragraphs
from storage import bookings, reports
from storage.database import Database

ROLES = frozenset({"customer", "provider"})
MAX_PAGE = 100
DAY = timedelta(days=1)

Id = Annotated[int, Field(ge=1, le=2**63 - 1)]
ReportStatus = Literal["open", "resolved", "closed"]


class CreateReport(IdempotentParams):
    booking_id: Id
    reason: Annotated[str, Line(2, 100)]
    description: Annotated[str, Paragraphs(10, 2000)]


class ListReports(Params):
    status: ReportStatus | None = None
    cursor: Cursor | None = Field(None, description="nextCursor of the previous page")
    limit: int = Field(50, ge=1, le=MAX_PAGE)


class SetReportStatus(Params):
    report_id: Id
    status: ReportStatus


class Report(Result):
    """A report as its reporter sees it."""

    id: int
    booking_id: int | None
    reporter_side: str
    reason: str
    description: str
    status: str
    created_at: datetime
    updated_at: datetime


class AdminReport(Report):
    """A report in the admin console: who reported whom, about which service."""

    reporter_id: int | None
    reporter_name: str | None
    reported_id: int | None
    reported_name: str | None
    service_name: str | None


class ReportPage(Result):
    reports: list[AdminReport]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: no more")


def _report(row: reports.ReportRow) -> Report:
    return Report(**{k: getattr(row, k) for k in Report.model_fields})


def _admin_report(row: reports.ReportRow) -> AdminReport:
    return AdminReport(**{k: getattr(row, k) for k in AdminReport.model_fields})


class ReportService:
    def __init__(self, db: Database, clock: Clock, settings: BookingSettings) -> None:
        self._db = db
        self._clock = clock
        self._settings = settings

    def register(self, registry: MethodRegistry) -> None:
        add = registry.add
        add("reports.create", self.create, params=CreateReport, result=Report, roles=ROLES)
        add(
            "admin.reports.list",
            self.list,
            params=ListReports,
            result=ReportPage,
            access=Access.ADMIN,
        )
        add(
            "admin.reports.setStatus",
            self.set_status,
            params=SetReportStatus,
            result=AdminReport,
            access=Access.ADMIN,
        )

    async def create(self, caller: Caller, params: CreateReport) -> Report:
        """Report the other side of one of your bookings (once per booking)."""
        user_id = caller.require_user()
        side = side_of(caller)
        now = self._clock.now()
        limit = self._settings.reports_per_day
        async with self._db.transaction() as conn:
            booking = await bookings.get_booking(conn, params.booking_id, user_id)
            if booking is None or party(booking, side) != user_id:
                raise NotFound("no such booking", field="bookingId")
            count, oldest = await reports.reports_since(conn, user_id, now - DAY)
            if count >= limit and oldest is not None:
                raise RateLimited(
                    f"at most {limit} reports per day",
                    retry_after=max((oldest + DAY - now).total_seconds(), 0.001),
                    reason="reports_per_day",
                    limit=limit,
                )
            row = await reports.insert_report(
                conn,
                booking_id=booking.id,
                reporter_side=side.value,
                reporter_id=user_id,
                reported_id=booking.provider_id if side is Side.CUSTOMER else booking.customer_id,
                reason=params.reason,
                description=params.description,
                now=now,
            )
            if row is None:
                raise Conflict("you reported this booking already", reason="already_reported")
        return _report(row)

    async def list(self, caller: Caller, params: ListReports) -> ReportPage:
        """Reports, newest first, of one status or all."""
        query = ("reports", params.status)
        rows = await reports.list_reports(
            self._db,
            status=params.status,
            before_id=decode_cursor(params.cursor, query),
            limit=params.limit + 1,
        )
        return ReportPage(
            reports=[_admin_report(r) for r in rows[: params.limit]],
            next_cursor=next_cursor([r.id for r in rows], params.limit, query),
        )

    async def set_status(self, caller: Caller, params: SetReportStatus) -> AdminReport:
        """Set a report open, resolved or closed."""
        row = await reports.set_status(self._db, params.report_id, params.status, self._clock.now())
        if row is None:
            raise NotFound("no such report", field="reportId")
        return _admin_report(row)
