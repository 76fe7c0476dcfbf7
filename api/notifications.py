"""In-app notifications (methods ``notifications.*``, event ``notification.created``).

Notifications are typed (the original inferred a type from the title) and written in
the same transaction as the change they tell about (a booking accepted, a rating
received ...), each with a live ``notification.created`` event. Every type has one
entry in :data:`CATALOGUE`: who gets it, its title and body templates and its push
category; the features that write notifications take their texts from it
(:func:`new_notification`, :func:`stage_notification`), and ``docs/protocol.md`` shows
it as a table. They are kept ``notifications.retention_days`` (90) and pruned by
housekeeping (:meth:`prune`).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
import string
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Literal

from prometheus_client import Counter
from pydantic import Field, model_validator

from kernel.clock import Clock
from kernel.events import EventSpec
from kernel.feature import Feature, Kit
from kernel.outbox import Outbox, StagedEvents
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
    """Every kind of in-app notification; apps switch on it. Its texts: :data:`CATALOGUE`."""

    WELCOME = "welcome"
    BOOKING_REQUEST = "booking_request"
    BOOKING_ACCEPTED = "booking_accepted"
    BOOKING_REJECTED = "booking_rejected"
    BOOKING_STARTED = "booking_started"
    BOOKING_COMPLETED = "booking_completed"
    BOOKING_CANCELLED = "booking_cancelled"
    BOOKING_PARTY_GONE = "booking_party_gone"
    RATING_RECEIVED = "rating_received"
    RATING_SUBMITTED = "rating_submitted"
    REPORT_SUBMITTED = "report_submitted"
    PAYMENT_SUCCESS = "payment_success"
    PAYMENT_FAILED = "payment_failed"
    PAYMENT_REFUNDED = "payment_refunded"
    SERVICE_EXPIRED = "service_expired"
    DAILY_REMINDER = "daily_reminder"
    HOURLY_REMINDER = "hourly_reminder"
    MORNING_SUMMARY = "morning_summary"
    PROVIDER_REMINDER = "provider_reminder"
    SERVICE_EXPIRY_WARNING = "service_expiry_warning"
    LABOUR_ACCESS_EXPIRING = "labour_access_expiring"
    LABOUR_ACCESS_EXPIRED = "labour_access_expired"


# --- The catalogue of kinds ----------------------------------------------------------------

# An optional part of a template: ``[ Reason: {reason}]`` is left out when a field in it
# is None. No nesting; templates have no literal brackets or braces.
_OPTIONAL = re.compile(r"\[([^\[\]]*)\]")


def _names(text: str) -> list[str]:
    return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]


@dataclass(frozen=True, slots=True)
class Template:
    """A text with ``{named}`` fields and ``[optional parts]`` (left out when one of
    their fields is None)."""

    text: str

    def __post_init__(self) -> None:
        plain = _OPTIONAL.sub(lambda m: m.group(1), self.text)
        if any(c in plain for c in "[]"):
            raise ValueError(f"unbalanced or nested [ ] in {self.text!r}")
        for name in _names(plain):
            if not name.isidentifier():
                raise ValueError(f"{name!r} in {self.text!r}: fields are plain names")

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(_names(self.text.replace("[", "").replace("]", "")))

    def render(self, values: Mapping[str, object]) -> str:
        """The text with ``values`` (a missing field is a KeyError; None in a required
        field a ValueError). Each part is formatted once: values are never parsed."""
        parts: list[str] = []
        at = 0
        for match in _OPTIONAL.finditer(self.text):
            parts.append(self._part(self.text[at : match.start()], values, required=True))
            parts.append(self._part(match.group(1), values, required=False))
            at = match.end()
        parts.append(self._part(self.text[at:], values, required=True))
        return "".join(parts)

    def _part(self, part: str, values: Mapping[str, object], *, required: bool) -> str:
        given = {name: values[name] for name in _names(part)}
        absent = [name for name, value in given.items() if value is None]
        if absent and required:
            raise ValueError(f"{absent[0]} is required in {self.text!r}")
        return "" if absent else part.format_map(given)


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of notification: who gets it (for the documentation), its title and
    body, its push category (users switch categories off)."""

    type: NotificationType
    to: str
    title: Template
    body: Template
    category: Category

    @property
    def fields(self) -> frozenset[str]:
        return self.title.fields | self.body.fields

    def render(self, values: Mapping[str, object]) -> tuple[str, str]:
        """Title and body; ``values`` may hold more fields than this kind uses."""
        return self.title.render(values), self.body.render(values)


def _kind(
    type: NotificationType, to: str, title: str, body: str, category: Category = "bookings"
) -> Kind:
    return Kind(type, to, Template(title), Template(body), category)


#: Every kind of notification (``docs/protocol.md`` has it as a table; a unit test keeps
#: the two in step). ``when``, ``date`` and ``time`` are in the deployment's zone.
CATALOGUE: dict[NotificationType, Kind] = {
    kind.type: kind
    for kind in (
        _kind(
            NotificationType.WELCOME,
            "a new customer or provider account, at its first login",
            "Welcome to {app}! 🎉",
            "Hi[ {name}], your account is ready. {start}",
        ),
        _kind(
            NotificationType.BOOKING_REQUEST,
            "the provider: a customer booked them",
            "New booking request",
            "{customer} booked {service} for {when}.",
        ),
        _kind(
            NotificationType.BOOKING_ACCEPTED,
            "the customer: the provider accepted",
            "Booking accepted",
            "{provider} accepted your {service} booking for {when}.",
        ),
        _kind(
            NotificationType.BOOKING_REJECTED,
            "the customer: the provider rejected",
            "Booking rejected",
            "{provider} cannot take your {service} booking for {when}: {reason}",
        ),
        _kind(
            NotificationType.BOOKING_STARTED,
            "the customer: the provider started the job",
            "Job started",
            "{provider} started your {service} job.",
        ),
        _kind(
            NotificationType.BOOKING_COMPLETED,
            "the customer: the provider completed the job",
            "Job completed",
            "{provider} completed your {service} job. Rate it?",
        ),
        _kind(
            NotificationType.BOOKING_CANCELLED,
            "the provider: the customer cancelled",
            "Booking cancelled by the customer",
            "{customer} cancelled the {service} booking for {when}.[ Reason: {reason}]",
        ),
        _kind(
            NotificationType.BOOKING_PARTY_GONE,
            "the other side: an open booking's customer or provider deleted their account",
            "Booking cancelled",
            "The {side} closed their account: the {service} booking for {when} is cancelled.",
        ),
        _kind(
            NotificationType.RATING_RECEIVED,
            "the rated side: the other side rated a job",
            "New rating",
            "{rater} rated your {service} job {stars}/5.",
        ),
        _kind(
            NotificationType.RATING_SUBMITTED,
            "the rater: their rating was saved",
            "Rating submitted",
            "You rated {ratee} {stars}/5 for the {service} job. Thank you for your feedback.",
        ),
        _kind(
            NotificationType.REPORT_SUBMITTED,
            "the reporter: their report was received",
            "Report submitted",
            "We received your report on the {service} booking for {when}. Our team will"
            " review it; follow it in My reports.",
        ),
        _kind(
            NotificationType.PAYMENT_SUCCESS,
            "the payer: a listing fee or labour access is paid",
            "Payment successful",
            "₹{amount} received: {what}[, active until {until}].",
            "payments",
        ),
        _kind(
            NotificationType.PAYMENT_FAILED,
            "the payer: the payment failed",
            "Payment failed",
            "Your payment of ₹{amount} for {what} did not go through. Nothing was charged;"
            " try again.",
            "payments",
        ),
        _kind(
            NotificationType.PAYMENT_REFUNDED,
            "the payer: an admin's refund went through",
            "Payment refunded",
            "₹{amount} for {what} was refunded to you.",
            "payments",
        ),
        _kind(
            NotificationType.SERVICE_EXPIRED,
            "the provider: a listing's period ended",
            "Service expired",
            "Your {service} listing ended on {date}. Renew it[ for ₹{price}] to list it again.",
            "payments",
        ),
        _kind(
            NotificationType.DAILY_REMINDER,
            "the customer: each open booking on tomorrow's date, once (09:00, or the next"
            " full hour until 21:00 for one booked later)",
            "Booking reminder",
            "Your {service} booking is tomorrow at {time}.",
            "reminders",
        ),
        _kind(
            NotificationType.HOURLY_REMINDER,
            "the customer: 2 hours before an open booking, once",
            "Appointment starting soon",
            "Your {service} booking is at {time}.",
            "reminders",
        ),
        _kind(
            NotificationType.MORNING_SUMMARY,
            "the customer: 08:00, when they have open bookings today",
            "Today's bookings",
            "You have {count} today: {bookings}.",
            "reminders",
        ),
        _kind(
            NotificationType.PROVIDER_REMINDER,
            "the provider: 1 hour before an accepted booking, once",
            "Booking coming up",
            "Your {service} booking[ with {customer}] is at {time}.",
            "reminders",
        ),
        _kind(
            NotificationType.SERVICE_EXPIRY_WARNING,
            "the provider: 2 days before a paid listing's period ends, once per period",
            "Service expiring soon",
            "Your {service} listing ends on {date}. Pay ₹{price} to keep it listed.",
            "payments",
        ),
        _kind(
            NotificationType.LABOUR_ACCESS_EXPIRING,
            "the customer: a day before their labour access ends, once per period",
            "Labour access ending",
            "Your access to labour services ends on {date} at {time}. Pay ₹{price} to extend it.",
            "payments",
        ),
        _kind(
            NotificationType.LABOUR_ACCESS_EXPIRED,
            "the customer: their labour access ended (within the day), once",
            "Labour access expired",
            "Your access to labour services has ended. Pay ₹{price} to book labour again.",
            "payments",
        ),
    )
}

#: The push category of each notification type (users switch categories off).
CATEGORY: dict[str, Category] = {kind.type.value: kind.category for kind in CATALOGUE.values()}

#: The welcome's fields by role (``name`` is the account's).
WELCOME: dict[str, dict[str, str]] = {
    "customer": {
        "app": "BuildXpert",
        "start": "Find trusted professionals near you and book them in a few taps.",
    },
    "provider": {
        "app": "BuildXpert Provider",
        "start": "Register your services to start getting bookings.",
    },
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


async def new_notification(
    conn: Executor,
    user_id: int,
    type: NotificationType,
    values: Mapping[str, object],
    *,
    booking_id: int | None = None,
    now: datetime,
) -> NotificationRow:
    """Write a notification of ``type`` for ``user_id``, its title and body from the
    catalogue with ``values``, in the caller's transaction (stage its event with
    :func:`stage_notification`)."""
    title, body = CATALOGUE[type].render(values)
    return await notifications.insert_notification(
        conn, user_id=user_id, type=type, title=title, body=body, booking_id=booking_id, now=now
    )


def stage_notification(
    staged: StagedEvents,
    row: NotificationRow,
    *,
    push_after: float | None = None,
    now: datetime | None = None,
) -> None:
    """Stage ``notification.created`` of ``row`` for its user (pushed after
    ``push_after`` seconds unless acknowledged, if given)."""
    staged.add(
        row.user_id,
        NOTIFICATION_CREATED,
        NotificationCreated(notification=notification(row)),
        push_after=push_after,
        now=now,
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
