"""Reports (methods ``reports.create``, ``reports.mine``; ``admin.reports.list``,
``admin.reports.setStatus`` and ``admin.reports.setStatusMany`` for admins; event
``report.updated``; reference 1.5, 8.4).

Either side of a booking may report the other, once per booking and side, at most
``bookings.reports_per_day`` (5) reports per rolling 24 hours. The reporter gets a
``report_submitted`` notification with the report; the reported side is not told (as in
the original). Admins review reports and set them resolved or closed, one or up to
:data:`MAX_IDS` at once; each report whose status changed goes to its reporter as
``report.updated``, in the transaction of the change. The original's provider reports
named the customer by a fuzzy name match: here a report always belongs to a booking,
so it names exactly its two parties. A report may carry up to :data:`MAX_EVIDENCE`
images (uploads of purpose ``reportEvidence``, :mod:`api.uploads`), which only admins
see (``admin.reports.list``, by signed links).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import Field, model_validator

from api.bookings.rules import Side
from api.bookings.service import party, side_of
from api.bookings.settings import BookingSettings
from api.notifications import NotificationType, new_notification, stage_notification
from api.uploads.models import UploadId, UploadView
from api.uploads.service import Uploads
from kernel.clock import Clock
from kernel.errors import Conflict, NotFound, RateLimited
from kernel.events import EventSpec
from kernel.outbox import Outbox
from kernel.rpc.cursors import Cursor, decode_cursor, next_cursor
from kernel.rpc.registry import Access, Caller, IdempotentParams, MethodRegistry, Params, Result
from kernel.rpc.text import Line, Paragraphs, invalid
from storage import bookings, reports
from storage.database import Database

ROLES = frozenset({"customer", "provider"})
MAX_PAGE = 100
MAX_IDS = 100
MAX_EVIDENCE = 5
DAY = timedelta(days=1)

Id = Annotated[int, Field(ge=1, le=2**63 - 1)]
ReportStatus = Literal["open", "resolved", "closed"]
ReporterSide = Literal["customer", "provider"]


class CreateReport(IdempotentParams):
    booking_id: Id
    reason: Annotated[str, Line(2, 100)]
    description: Annotated[str, Paragraphs(10, 2000)]
    evidence_upload_ids: list[UploadId] = Field(
        default_factory=list,
        max_length=MAX_EVIDENCE,
        description="images of what happened: uploads of purpose reportEvidence"
        " (uploads.create), seen by admins only",
    )

    @model_validator(mode="after")
    def _distinct(self) -> CreateReport:
        if len(set(self.evidence_upload_ids)) != len(self.evidence_upload_ids):
            raise invalid(("evidenceUploadIds", "each upload at most once"))
        return self


class MyReports(Params):
    status: ReportStatus | None = None
    cursor: Cursor | None = Field(None, description="nextCursor of the previous page")
    limit: int = Field(20, ge=1, le=MAX_PAGE)


class ListReports(Params):
    status: ReportStatus | None = None
    reporter_side: ReporterSide | None = Field(None, description="only reports by this side")
    cursor: Cursor | None = Field(None, description="nextCursor of the previous page")
    limit: int = Field(50, ge=1, le=MAX_PAGE)


class SetReportStatus(Params):
    report_id: Id
    status: ReportStatus


class SetReportStatuses(Params):
    report_ids: list[Id] = Field(min_length=1, max_length=MAX_IDS)
    status: ReportStatus


class Report(Result):
    """A report as its reporter sees it."""

    id: int
    booking_id: int | None
    reporter_side: str
    reported_name: str | None = Field(description="the other side of the booking")
    service_name: str | None
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


class MyReportPage(Result):
    reports: list[Report]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: no more")


class ListedReport(AdminReport):
    evidence: list[UploadView] = Field(description="the reporter's images (signed links)")


class ReportPage(Result):
    reports: list[ListedReport]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: no more")


class StatusesSet(Result):
    changed: list[AdminReport] = Field(description="the reports whose status changed, by id")
    unchanged_ids: list[int] = Field(description="reports that had this status already")


class ReportUpdated(Result):
    """``report.updated``: an admin changed the status of one of your reports."""

    report: Report


REPORT_UPDATED = EventSpec(
    "report.updated", ReportUpdated, "to the reporter: an admin changed their report's status"
)


def _report(row: reports.ReportRow) -> Report:
    return Report(**{k: getattr(row, k) for k in Report.model_fields})


def _admin_report(row: reports.ReportRow) -> AdminReport:
    return AdminReport(**{k: getattr(row, k) for k in AdminReport.model_fields})


class ReportService:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        clock: Clock,
        settings: BookingSettings,
        *,
        timezone: str,
        uploads: Uploads,
    ) -> None:
        self._uploads = uploads
        self._db = db
        self._outbox = outbox
        self._clock = clock
        self._settings = settings
        self._zone = ZoneInfo(timezone)

    def register(self, registry: MethodRegistry) -> None:
        add = registry.add
        add("reports.create", self.create, params=CreateReport, result=Report, roles=ROLES)
        add("reports.mine", self.mine, params=MyReports, result=MyReportPage, roles=ROLES)
        add(
            "admin.reports.list",
            self.list_reports,
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
        add(
            "admin.reports.setStatusMany",
            self.set_status_many,
            params=SetReportStatuses,
            result=StatusesSet,
            access=Access.ADMIN,
        )

    async def create(self, caller: Caller, params: CreateReport) -> Report:
        """Report the other side of one of your bookings (once per booking); you get a
        ``report_submitted`` notification."""
        user_id = caller.require_user()
        side = side_of(caller)
        now = self._clock.now()
        limit = self._settings.reports_per_day
        staged = self._outbox.stage()
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
            if params.evidence_upload_ids:
                await self._uploads.replace(
                    conn,
                    user_id,
                    "reportEvidence",
                    params.evidence_upload_ids,
                    field="evidenceUploadIds",
                    report_id=row.id,
                )
            when = booking.appointment_at.astimezone(self._zone).strftime("%d %b %Y, %I:%M %p")
            note = await new_notification(
                conn,
                user_id,
                NotificationType.REPORT_SUBMITTED,
                {"service": booking.service_name, "when": when},
                booking_id=booking.id,
                now=now,
            )
            stage_notification(staged, note)
            report = _report(row)
            staged.answer(report)
            await staged.write(conn)
        await staged.deliver()
        return report

    async def mine(self, caller: Caller, params: MyReports) -> MyReportPage:
        """Your own reports, newest first, of one status or all."""
        query = ("reports.mine", params.status)
        rows = await reports.list_reports(
            self._db,
            status=params.status,
            reporter_id=caller.require_user(),
            before_id=decode_cursor(params.cursor, query),
            limit=params.limit + 1,
        )
        return MyReportPage(
            reports=[_report(r) for r in rows[: params.limit]],
            next_cursor=next_cursor([r.id for r in rows], params.limit, query),
        )

    async def list_reports(self, caller: Caller, params: ListReports) -> ReportPage:
        """Reports, newest first, of one status or reporting side, or all, with their
        evidence (links for the asking admin)."""
        query = ("reports", params.status, params.reporter_side)
        rows = await reports.list_reports(
            self._db,
            status=params.status,
            reporter_side=params.reporter_side,
            before_id=decode_cursor(params.cursor, query),
            limit=params.limit + 1,
        )
        page = rows[: params.limit]
        evidence = await self._uploads.evidence([r.id for r in page])
        admin_id = caller.require_user()
        return ReportPage(
            reports=[
                ListedReport(
                    **_admin_report(r).model_dump(),
                    evidence=[self._uploads.view(u, admin_id) for u in evidence.get(r.id, [])],
                )
                for r in page
            ],
            next_cursor=next_cursor([r.id for r in rows], params.limit, query),
        )

    async def set_status(self, caller: Caller, params: SetReportStatus) -> AdminReport:
        """Set a report open, resolved or closed (its reporter gets ``report.updated``
        if that changed it)."""
        changed = await self._set_status([params.report_id], params.status, "reportId")
        if changed:
            return _admin_report(changed[0])
        row = await reports.get_report(self._db, params.report_id)
        assert row is not None  # reports are never deleted
        return _admin_report(row)

    async def set_status_many(self, caller: Caller, params: SetReportStatuses) -> StatusesSet:
        """Set up to 100 reports open, resolved or closed at once: all or, if one of
        them is not found, none (each reporter gets ``report.updated`` for each report
        that changed)."""
        ids = sorted(set(params.report_ids))
        changed = await self._set_status(ids, params.status, "reportIds")
        done = {row.id for row in changed}
        return StatusesSet(
            changed=[_admin_report(row) for row in changed],
            unchanged_ids=[i for i in ids if i not in done],
        )

    async def _set_status(
        self, ids: list[int], status: ReportStatus, field: str
    ) -> list[reports.ReportRow]:
        """One transaction: refuse if any id is no report's, else change those not in
        ``status`` and stage their reporters' events; the reports changed."""
        staged = self._outbox.stage()
        async with self._db.transaction() as conn:
            absent = await reports.missing(conn, ids)
            if absent:
                raise NotFound(
                    "no such report" if len(ids) == 1 else f"no such reports: {absent}",
                    field=field,
                    missing=absent,
                )
            changed = await reports.set_status(conn, ids, status, self._clock.now())
            for row in changed:
                if row.reporter_id is not None:
                    staged.add(row.reporter_id, REPORT_UPDATED, ReportUpdated(report=_report(row)))
            await staged.write(conn)
        await staged.deliver()
        return changed
