"""The admin console's accounts and numbers (methods ``admin.users.*``,
``admin.providers.list``, ``admin.stats``), all for admins only (reference 1.12, 8.6).

Removing an account erases it as ``me.delete`` does (:mod:`api.erasure`: open bookings
cancelled, sessions ended and sockets closed on every instance, personal data gone)
and blocks its phone and email from logging in or signing up again.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, Field

from api.erasure import DEADLINE as ERASURE_DEADLINE
from api.erasure import ERASURE, Erasure
from kernel.audit import AUDIT
from kernel.clock import Clock
from kernel.errors import Conflict, Forbidden, NotFound
from kernel.feature import Feature, Kit
from kernel.rpc.cursors import Cursor as AuditCursor
from kernel.rpc.cursors import decode_cursor, next_cursor
from kernel.rpc.registry import Access, Caller, Empty, MethodRegistry, Params, Result
from kernel.rpc.text import Line
from storage import admin
from storage.database import Database

MAX_PAGE = 100
STATS_TTL = timedelta(seconds=30)
JOINED_DAYS = 30  # admin.stats: accounts joined on each of the last 30 days

Id = Annotated[int, Field(ge=1, le=2**63 - 1)]
Cursor = Annotated[str, Field(min_length=1, max_length=20, pattern=r"^[1-9][0-9]{0,18}$")]
Search = Annotated[str, Line(1, 100)]


# --- Wire models -------------------------------------------------------------------------


class ListUsers(Params):
    role: Literal["customer", "provider", "admin"] | None = None
    verified: bool | None = None
    search: Search | None = Field(None, description="part of the phone, name or email")
    cursor: Cursor | None = Field(None, description="nextCursor of the previous page")
    limit: int = Field(50, ge=1, le=MAX_PAGE)


class ListProviders(Params):
    verified: bool | None = None
    search: Search | None = Field(None, description="part of the phone, name or email")
    cursor: Cursor | None = Field(None, description="nextCursor of the previous page")
    limit: int = Field(50, ge=1, le=MAX_PAGE)


class VerifyUser(Params):
    user_id: Id
    verified: bool


class UserRef(Params):
    user_id: Id


class AdminUser(Result):
    id: int
    phone: str
    role: str
    full_name: str | None
    email: str | None
    is_verified: bool
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None


class BookingCounts(Result):
    """An account's bookings (as customer or as provider) by status."""

    total: int = 0
    pending: int = 0
    accepted: int = 0
    rejected: int = 0
    in_progress: int = 0
    completed: int = 0
    cancelled: int = 0


class ListedUser(AdminUser):
    bookings: BookingCounts


class UserPage(Result):
    users: list[ListedUser]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: no more")


class RegistrationCounts(Result):
    pending: int = 0
    active: int = 0
    expired: int = 0


class AdminListing(Result):
    provider_service_id: int
    service_slug: str
    status: str = Field(description="pending (until paid), active, expired")
    active_until: datetime | None = Field(description="the end of what is paid for")


class AdminProvider(AdminUser):
    registrations: RegistrationCounts
    listings: list[AdminListing]


class ProviderPage(Result):
    providers: list[AdminProvider]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: no more")


class ListActions(Params):
    admin_id: Id | None = None
    cursor: AuditCursor | None = Field(None, description="nextCursor of the previous page")
    limit: int = Field(50, ge=1, le=MAX_PAGE)


class Action(Result):
    """One admin action: who, what (method and params), from where, how it ended."""

    id: int
    admin_id: int | None
    admin_name: str | None
    method: str
    params: dict[str, Any]
    ip: str | None
    outcome: str = Field(description='"ok", or the error\'s name')
    at: datetime


class ActionPage(Result):
    actions: list[Action]
    next_cursor: str | None


class UserRemoved(Result):
    ok: bool = True
    revoked: int = Field(description="sessions ended by this call (0 when repeated)")


class JoinedDay(Result):
    day: date = Field(description="a day of the calendar of Stats.timezone")
    users: int = Field(description="accounts created that day, of any role")
    customers: int
    providers: int


class ActivityDay(Result):
    day: date = Field(description="a day of the calendar of Stats.timezone")
    bookings: int = Field(description="bookings made that day")
    calls: int = Field(description="calls started that day, answered or not")
    revenue_paise: int = Field(
        description="payments received that day (by when paid), not refunded, in paise"
    )


class Stats(Result):
    users_by_role: dict[str, int] = Field(description="active accounts by role")
    verified_users: int
    registrations_by_status: dict[str, int]
    active_services: int
    revenue_paise: int = Field(description="payments received and not refunded, in paise")
    payments_by_status: dict[str, int]
    bookings_by_status: dict[str, int] = Field(description="every booking, by its status")
    open_reports: int = Field(description="reports with status open")
    joined_per_day: list[JoinedDay] = Field(
        description=f"the last {JOINED_DAYS} days up to today, oldest first, days with none too"
    )
    activity_per_day: list[ActivityDay] = Field(
        description=f"the last {JOINED_DAYS} days up to today, oldest first, days with none too"
    )
    timezone: str = Field(
        description="the calendar of joinedPerDay and activityPerDay (database.timezone)"
    )
    computed_at: datetime = Field(description="the counts are cached for 30 s")


def _counts(listings: list[admin.ListingRow]) -> RegistrationCounts:
    counts: dict[str, int] = {}
    for listing in listings:
        counts[listing.status] = counts.get(listing.status, 0) + 1
    return RegistrationCounts(**counts)


def _user_fields(row: admin.UserListRow) -> dict[str, object]:
    return {k: getattr(row, k) for k in admin.UserListRow.__slots__}


def _booking_counts(by_status: dict[str, int]) -> BookingCounts:
    return BookingCounts(total=sum(by_status.values()), **by_status)


# --- The service -------------------------------------------------------------------------


class AdminService:
    def __init__(
        self, db: Database, clock: Clock, erasure: Erasure, *, timezone: str = "UTC"
    ) -> None:
        self._db = db
        self._clock = clock
        self._erasure = erasure
        self._stats: Stats | None = None
        # The calendar of admin.stats' days: the server's zone (database.timezone).
        self._timezone = timezone

    def register(self, registry: MethodRegistry) -> None:
        add = registry.add
        a = Access.ADMIN
        add("admin.users.list", self.list_users, params=ListUsers, result=UserPage, access=a)
        add(
            "admin.providers.list",
            self.list_providers,
            params=ListProviders,
            result=ProviderPage,
            access=a,
        )
        add("admin.users.verify", self.verify, params=VerifyUser, result=AdminUser, access=a)
        add(
            "admin.users.remove",
            self.remove,
            params=UserRef,
            result=UserRemoved,
            access=a,
            deadline=ERASURE_DEADLINE,
        )
        add("admin.stats", self.stats, params=Empty, result=Stats, access=a)
        add("admin.audit.list", self.audit_list, params=ListActions, result=ActionPage, access=a)

    async def _page(
        self, params: ListUsers | ListProviders, role: str | None
    ) -> tuple[list[admin.UserListRow], str | None]:
        rows = await admin.list_users(
            self._db,
            role=role,
            verified=params.verified,
            search=params.search,
            after_id=None if params.cursor is None else int(params.cursor),
            limit=params.limit + 1,
        )
        page = rows[: params.limit]
        return page, str(page[-1].id) if len(rows) > params.limit else None

    async def list_users(self, caller: Caller, params: ListUsers) -> UserPage:
        """Accounts, oldest first, filtered by role, verified flag and a search text,
        with their bookings by status."""
        page, next_cursor = await self._page(params, params.role)
        counts = await admin.booking_counts(self._db, [r.id for r in page])
        return UserPage(
            users=[
                ListedUser(**_user_fields(r), bookings=_booking_counts(counts.get(r.id, {})))
                for r in page
            ],
            next_cursor=next_cursor,
        )

    async def list_providers(self, caller: Caller, params: ListProviders) -> ProviderPage:
        """Provider accounts, oldest first, with their registrations by status."""
        page, next_cursor = await self._page(params, "provider")
        listings = await admin.listings_of(self._db, [r.id for r in page])
        return ProviderPage(
            providers=[
                AdminProvider(
                    **_user_fields(r),
                    registrations=_counts(listings.get(r.id, [])),
                    listings=[
                        AdminListing(
                            provider_service_id=x.id,
                            service_slug=x.service_slug,
                            status=x.status,
                            active_until=x.active_until,
                        )
                        for x in listings.get(r.id, [])
                    ],
                )
                for r in page
            ],
            next_cursor=next_cursor,
        )

    async def _not_an_admin(self, user_id: int, action: str) -> None:
        """Admins are made and unmade by operators (the CLI), not by each other."""
        if await admin.role_of(self._db, user_id) == "admin":
            raise Forbidden(
                f"an admin cannot {action} an admin (an operator can, with rtc-server)",
                reason="admin_account",
            )

    async def verify(self, caller: Caller, params: VerifyUser) -> AdminUser:
        """Set or clear an account's verified flag (an unverify sticks across logins)."""
        await self._not_an_admin(params.user_id, "unverify" if not params.verified else "verify")
        row = await admin.set_verified(self._db, params.user_id, params.verified)
        if row is None:
            raise NotFound("no such user", field="userId")
        return AdminUser(**_user_fields(row))

    async def remove(self, caller: Caller, params: UserRef) -> UserRemoved:
        """Remove an account: erase it as ``me.delete`` does (its open bookings cancelled,
        the other sides told, its sessions ended and sockets closed, its personal data
        gone) and block its phone and email from signing up again."""
        if params.user_id == caller.require_user():
            raise Conflict("an admin cannot remove themselves", reason="self", field="userId")
        await self._not_an_admin(params.user_id, "remove")
        reason = f"removed by admin {caller.user_id}"
        closing = await self._erasure.run(
            self._db,
            lambda conn: self._erasure.erase(conn, params.user_id, reason=reason, block=True),
        )
        if closing is None:
            raise NotFound("no such user", field="userId")
        await self._erasure.closed(closing)
        return UserRemoved(revoked=len(closing.sessions))

    async def stats(self, caller: Caller, params: Empty) -> Stats:
        """Counts of accounts, registrations, services, bookings, open reports, the
        accounts joined per day and the bookings, calls and revenue per day (cached for
        30 s)."""
        now = self._clock.now()
        cached = self._stats
        if cached is not None and now - cached.computed_at < STATS_TTL:
            return cached
        row = await admin.stats(self._db, now=now, timezone=self._timezone, days=JOINED_DAYS)
        self._stats = Stats(
            users_by_role=row.users_by_role,
            verified_users=row.verified_users,
            registrations_by_status=row.registrations_by_status,
            active_services=row.active_services,
            revenue_paise=row.revenue_paise,
            payments_by_status=row.payments_by_status,
            bookings_by_status=row.bookings_by_status,
            open_reports=row.open_reports,
            joined_per_day=[
                JoinedDay(day=d.day, users=d.users, customers=d.customers, providers=d.providers)
                for d in row.joined
            ],
            activity_per_day=[
                ActivityDay(
                    day=d.day, bookings=d.bookings, calls=d.calls, revenue_paise=d.revenue_paise
                )
                for d in row.activity
            ],
            timezone=self._timezone,
            computed_at=now,
        )
        return self._stats

    async def audit_list(self, caller: Caller, params: ListActions) -> ActionPage:
        """What admins did, newest first (of one admin or all)."""
        query = ("admin.audit", params.admin_id)
        rows = await admin.actions(
            self._db,
            admin_id=params.admin_id,
            before_id=decode_cursor(params.cursor, query),
            limit=params.limit + 1,
        )
        return ActionPage(
            actions=[
                Action(
                    id=r.id,
                    admin_id=r.admin_id,
                    admin_name=r.admin_name,
                    method=r.method,
                    params=orjson.loads(r.params),
                    ip=r.ip,
                    outcome=r.outcome,
                    at=r.created_at,
                )
                for r in rows[: params.limit]
            ],
            next_cursor=next_cursor([r.id for r in rows], params.limit, query),
        )


class AdminAudit:
    """The audit of admins' actions (:class:`kernel.audit.AuditLog`)."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def record(self, caller: Caller, method: str, params: BaseModel, outcome: str) -> None:
        fields = params.model_dump(mode="json", by_alias=True, exclude={"idempotency_key"})
        await admin.record_action(
            self._db,
            admin_id=caller.user_id,
            method=method,
            params=orjson.dumps(fields).decode(),
            ip=caller.ip,
            outcome=outcome,
            now=self._clock.now(),
        )


class AdminFeature(Feature):
    """Admins' view of the marketplace: accounts, blocks, stats, the audit of their own
    actions (``admin.*``)."""

    name = "admin"

    async def install(self, kit: Kit) -> None:
        service = AdminService(kit.db, kit.clock, kit.port(ERASURE), timezone=kit.timezone)
        service.register(kit.methods)
        kit.provide(AUDIT, AdminAudit(kit.db, kit.clock))
