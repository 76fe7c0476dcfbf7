"""In-app notifications (methods ``notifications.*``, event ``notification.created``).

Notifications are typed (the original inferred a type from the title) and written in
the same transaction as the change they tell about (a booking accepted, a rating
received ...), each with a live ``notification.created`` event. They are kept
``notifications.retention_days`` (90) and pruned by housekeeping (:meth:`prune`).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Literal

from prometheus_client import Counter
from pydantic import Field, model_validator

from kernel.clock import Clock
from kernel.events import EventSpec
from kernel.feature import Feature, Kit
from kernel.outbox import Outbox
from kernel.push import Category, PushNotice, PushPolicy
from kernel.rpc.cursors import Cursor, decode_cursor, next_cursor
from kernel.rpc.registry import Caller, Empty, MethodRegistry, Params, Result
from kernel.settings import Section
from storage import notifications
from storage.bookings import NotificationRow
from storage.database import Database
from storage.events import Executor

log = logging.getLogger("rtc.notifications")

MAX_PAGE = 50
MAX_IDS = 100
ROLES = frozenset({"customer", "provider"})

Id = Annotated[int, Field(ge=1, le=2**63 - 1)]


class NotificationType(enum.StrEnum):
    BOOKING_REQUEST = "booking_request"  # provider: a customer booked
    BOOKING_ACCEPTED = "booking_accepted"  # customer: the provider accepted ...
    BOOKING_REJECTED = "booking_rejected"
    BOOKING_STARTED = "booking_started"
    BOOKING_COMPLETED = "booking_completed"
    BOOKING_CANCELLED = "booking_cancelled"  # provider: the customer cancelled
    RATING_RECEIVED = "rating_received"  # the other side rated you
    PAYMENT_SUCCESS = "payment_success"  # the payer: a listing or labour access is paid
    PAYMENT_FAILED = "payment_failed"
    PAYMENT_REFUNDED = "payment_refunded"
    SERVICE_EXPIRED = "service_expired"  # the provider: a paid listing's period ended
    DAILY_REMINDER = "daily_reminder"  # customer: a booking tomorrow
    HOURLY_REMINDER = "hourly_reminder"  # customer: a booking in two hours
    MORNING_SUMMARY = "morning_summary"  # customer: today's bookings
    PROVIDER_REMINDER = "provider_reminder"  # provider: an accepted booking in an hour
    SERVICE_EXPIRY_WARNING = "service_expiry_warning"  # provider: a paid listing ends soon
    LABOUR_ACCESS_EXPIRING = "labour_access_expiring"  # customer: labour access ends soon
    LABOUR_ACCESS_EXPIRED = "labour_access_expired"  # customer: labour access ended


#: The push category of each notification type (users switch categories off).
CATEGORY: dict[str, Category] = {
    NotificationType.PAYMENT_SUCCESS: "payments",
    NotificationType.PAYMENT_FAILED: "payments",
    NotificationType.PAYMENT_REFUNDED: "payments",
    NotificationType.SERVICE_EXPIRED: "payments",
    NotificationType.DAILY_REMINDER: "reminders",
    NotificationType.HOURLY_REMINDER: "reminders",
    NotificationType.MORNING_SUMMARY: "reminders",
    NotificationType.PROVIDER_REMINDER: "reminders",
    NotificationType.SERVICE_EXPIRY_WARNING: "payments",
    NotificationType.LABOUR_ACCESS_EXPIRING: "payments",
    NotificationType.LABOUR_ACCESS_EXPIRED: "payments",
}


class NotificationSettings(Section):
    """In-app notifications."""

    # Days a notification is kept (read or not); older ones are pruned by housekeeping.
    retention_days: float = Field(90.0, gt=0)


# --- Wire models -------------------------------------------------------------------------


class ListNotifications(Params):
    cursor: Cursor | None = Field(None, description="nextCursor of the previous page")
    type: NotificationType | None = Field(None, description="only this type")
    unread_only: bool = False
    since: datetime | None = Field(None, description="created at or after (ISO 8601)")
    until: datetime | None = Field(None, description="created before (ISO 8601)")
    limit: int = Field(20, ge=1, le=MAX_PAGE)

    @model_validator(mode="after")
    def _range(self) -> ListNotifications:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name}: give a time zone (Z or +05:30)")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("since must be before until")
        return self


class MarkRead(Params):
    ids: list[Id] = Field(min_length=1, max_length=MAX_IDS)


class Notification(Result):
    id: int
    type: str
    title: str
    body: str
    booking_id: int | None
    created_at: datetime
    read: bool


class NotificationPage(Result):
    notifications: list[Notification]
    unread_count: int = Field(description="all unread notifications of the user")
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: no more")


class UnreadNotifications(Result):
    count: int


class MarkedRead(Result):
    updated: int = Field(description="notifications that were unread and are read now")
    unread_count: int


class Deleted(Result):
    deleted: int = Field(description="notifications deleted (ids not the caller's are ignored)")
    unread_count: int


class NotificationsChanged(Result):
    """``notifications.changed``: notifications were read or deleted on one of the user's
    devices; the others update their lists and badge."""

    read_ids: list[int] = Field(description="marked read (empty when allRead)")
    all_read: bool = Field(description="every notification was marked read")
    deleted_ids: list[int]
    unread_count: int


class NotificationCreated(Result):
    """``notification.created``: a new notification for this user."""

    notification: Notification


NOTIFICATION_CREATED = EventSpec(
    "notification.created", NotificationCreated, "a new in-app notification"
)
NOTIFICATIONS_CHANGED = EventSpec(
    "notifications.changed",
    NotificationsChanged,
    "notifications read or deleted on one of the user's devices",
)


def notification(row: NotificationRow) -> Notification:
    return Notification(
        id=row.id,
        type=row.type,
        title=row.title,
        body=row.body,
        booking_id=row.booking_id,
        created_at=row.created_at,
        read=row.read_at is not None,
    )


class NotificationService:
    def __init__(
        self, db: Database, clock: Clock, settings: NotificationSettings, outbox: Outbox
    ) -> None:
        self._outbox = outbox
        self._db = db
        self._clock = clock
        self._settings = settings

    def register(self, registry: MethodRegistry) -> None:
        add = registry.add
        add(
            "notifications.list",
            self.list,
            params=ListNotifications,
            result=NotificationPage,
            roles=ROLES,
        )
        add(
            "notifications.unreadCount",
            self.unread_count,
            params=Empty,
            result=UnreadNotifications,
            roles=ROLES,
        )
        add(
            "notifications.markRead",
            self.mark_read,
            params=MarkRead,
            result=MarkedRead,
            roles=ROLES,
        )
        add(
            "notifications.markAllRead",
            self.mark_all_read,
            params=Empty,
            result=MarkedRead,
            roles=ROLES,
        )
        add(
            "notifications.delete",
            self.delete,
            params=MarkRead,
            result=Deleted,
            roles=ROLES,
        )

    async def list(self, caller: Caller, params: ListNotifications) -> NotificationPage:
        """The caller's notifications, newest first, with the unread count (both read at
        once, on two connections)."""
        user_id = caller.require_user()
        query = (
            "notifications",
            params.type,
            params.unread_only,
            params.since.isoformat() if params.since else None,
            params.until.isoformat() if params.until else None,
        )
        before = decode_cursor(params.cursor, query)
        rows, unread = await asyncio.gather(
            notifications.list_notifications(
                self._db,
                user_id,
                type=params.type,
                unread_only=params.unread_only,
                before_id=before,
                limit=params.limit + 1,
                since=params.since,
                until=params.until,
            ),
            notifications.unread_count(self._db, user_id),
        )
        return NotificationPage(
            notifications=[notification(r) for r in rows[: params.limit]],
            unread_count=unread,
            next_cursor=next_cursor([r.id for r in rows], params.limit, query),
        )

    async def unread_count(self, caller: Caller, params: Empty) -> UnreadNotifications:
        """How many of the caller's notifications are unread."""
        return UnreadNotifications(
            count=await notifications.unread_count(self._db, caller.require_user())
        )

    async def mark_read(self, caller: Caller, params: MarkRead) -> MarkedRead:
        """Mark some of the caller's notifications read (ids not theirs are ignored); the
        user's other devices are told (``notifications.changed``)."""
        user_id = caller.require_user()
        ids = sorted(set(params.ids))
        now = self._clock.now()
        read, unread = await self._change(
            user_id, lambda conn: notifications.mark_read(conn, user_id, ids, now), "read"
        )
        return MarkedRead(updated=len(read), unread_count=unread)

    async def mark_all_read(self, caller: Caller, params: Empty) -> MarkedRead:
        """Mark every notification of the caller read (and tell the other devices)."""
        user_id = caller.require_user()
        now = self._clock.now()
        staged = self._outbox.stage()
        async with self._db.transaction() as conn:
            updated = await notifications.mark_all_read(conn, user_id, now)
            unread = await notifications.unread_count(conn, user_id)
            if updated:
                staged.add(
                    user_id,
                    NOTIFICATIONS_CHANGED,
                    NotificationsChanged(
                        read_ids=[], all_read=True, deleted_ids=[], unread_count=unread
                    ),
                )
                await staged.write(conn)
        if updated:
            await staged.deliver()
        return MarkedRead(updated=updated, unread_count=unread)

    async def delete(self, caller: Caller, params: MarkRead) -> Deleted:
        """Delete some of the caller's notifications (ids not theirs are ignored)."""
        user_id = caller.require_user()
        ids = sorted(set(params.ids))
        deleted, unread = await self._change(
            user_id, lambda conn: notifications.delete(conn, user_id, ids), "deleted"
        )
        return Deleted(deleted=len(deleted), unread_count=unread)

    async def _change(
        self,
        user_id: int,
        change: Callable[[Executor], Awaitable[Sequence[int]]],
        what: Literal["read", "deleted"],
    ) -> tuple[Sequence[int], int]:
        """Apply ``change`` and stage its event in one transaction; the ids it changed
        and the unread count after it."""
        staged = self._outbox.stage()
        async with self._db.transaction() as conn:
            ids = await change(conn)
            unread = await notifications.unread_count(conn, user_id)
            if ids:
                staged.add(
                    user_id,
                    NOTIFICATIONS_CHANGED,
                    NotificationsChanged(
                        read_ids=[*ids] if what == "read" else [],
                        all_read=False,
                        deleted_ids=[*ids] if what == "deleted" else [],
                        unread_count=unread,
                    ),
                )
                await staged.write(conn)
        if ids:
            await staged.deliver()
        return ids, unread

    async def prune(self) -> int:
        """Delete notifications past their retention; how many (a housekeeping job)."""
        before = self._clock.now() - timedelta(days=self._settings.retention_days)
        return await notifications.prune(self._db, before)


def notification_push(created: NotificationCreated) -> PushPolicy:
    """``notification.created`` → its own title and body, in its type's category."""
    note = created.notification
    booking = note.booking_id
    extra = {"notificationId": str(note.id), "type": str(note.type)}
    if booking is not None:
        extra["bookingId"] = str(booking)
    return PushPolicy(
        PushNotice(
            note.title,
            note.body,
            CATEGORY.get(note.type, "bookings"),
            collapse_key=f"booking:{booking}" if booking is not None else None,
            urgency="high",
            data=extra,
        )
    )


class NotificationsFeature(Feature):
    """In-app notifications: ``notifications.*``, the ``notification.created`` event
    (pushed when unacknowledged), retention."""

    name = "notifications"
    settings = NotificationSettings

    async def install(self, kit: Kit) -> None:
        self.service = NotificationService(
            kit.db, kit.clock, kit.settings(NotificationSettings), kit.outbox
        )
        self.service.register(kit.methods)
        kit.event(NOTIFICATION_CREATED, push=notification_push)
        kit.event(NOTIFICATIONS_CHANGED)
        self.pruned = Counter(
            "rtc_notifications_pruned_total",
            "In-app notifications deleted past their retention",
            registry=kit.metrics,
        )
        kit.cleanup(self._prune)

    async def _prune(self) -> None:
        removed = await self.service.prune()
        self.pruned.inc(removed)
        if removed:
            log.info("notifications pruned", extra={"removed": removed})
