"""Bookings as live jobs (methods ``bookings.*``; events ``booking.offered``,
``booking.updated``, ``booking.unreadCount``; reference 1.5, 8.1).

Every change is one transaction: the booking row is locked (``SELECT ... FOR NO KEY
UPDATE``, see :func:`storage.bookings.lock_booking`), the pure state machine
(:mod:`api.bookings.rules`) decides, the change, the other side's notification, every
event it causes and the answer for the ``idempotencyKey`` are written, and only then,
after the commit, the events go out live (:mod:`kernel.outbox`). So an answered request has its
events in the users' logs: an offer survives any reconnect. Of two concurrent
conflicting changes (an accept and a cancel), the second to get the lock finds the
booking changed and gets ``state_conflict``.

The ``idempotencyKey`` is claimed by the transaction's first statement
(:func:`kernel.idempotency.key_claim`), which also locks and reads; the new row,
the events and the answer are computed here from what it read, and the second
statement stores them all: two statements between BEGIN and COMMIT (see
:mod:`storage.bookings`).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from api.bookings import rules
from api.bookings.events import BOOKING_OFFERED, BOOKING_UNREAD, BOOKING_UPDATED
from api.bookings.metrics import BookingMetrics
from api.bookings.models import (
    Booking,
    BookingOffered,
    BookingPage,
    BookingRef,
    BookingStep,
    BookingUpdated,
    CancelBooking,
    CreateBooking,
    ListBookings,
    RejectBooking,
    UnreadBookings,
    booking_view,
)
from api.bookings.rules import Action, Side, Status
from api.bookings.settings import BookingSettings
from api.earnings import EARNINGS_UPDATED, earnings
from api.erasure import Closing
from api.notifications import (
    CATALOGUE,
    NOTIFICATION_CREATED,
    NotificationCreated,
    NotificationType,
    notification,
)
from kernel.clock import Clock
from kernel.errors import (
    Conflict,
    Forbidden,
    NotFound,
    PaymentRequired,
    RateLimited,
    StateConflict,
    Unprocessable,
)
from kernel.idempotency import key_claim
from kernel.outbox import Outbox, StagedEvents
from kernel.rpc.cursors import decode_cursor, next_cursor
from kernel.rpc.registry import Caller, Empty, MethodRegistry
from kernel.rpc.text import invalid
from storage import bookings, erasure
from storage.bookings import (
    BookingRow,
    Counts,
    LockedBooking,
    NewNotification,
    NotificationRow,
)
from storage.database import Database
from storage.errors import UniqueViolation
from storage.events import Answer, Executor, NewEvent

# The cancellation reason of the bookings of an account that was closed.
ACCOUNT_CLOSED = "account closed"

CUSTOMERS = frozenset({"customer"})
PROVIDERS = frozenset({"provider"})
BOTH = CUSTOMERS | PROVIDERS

# What the other side is told about a change (texts: api.notifications.CATALOGUE).
_TOLD: dict[Status, NotificationType] = {
    Status.ACCEPTED: NotificationType.BOOKING_ACCEPTED,
    Status.REJECTED: NotificationType.BOOKING_REJECTED,
    Status.IN_PROGRESS: NotificationType.BOOKING_STARTED,
    Status.COMPLETED: NotificationType.BOOKING_COMPLETED,
    Status.CANCELLED: NotificationType.BOOKING_CANCELLED,
}


def side_of(caller: Caller) -> Side:
    """Accounts are per role: a customer account is always the customer of its bookings."""
    if caller.role == "customer":
        return Side.CUSTOMER
    if caller.role == "provider":
        return Side.PROVIDER
    raise Forbidden("bookings are for customer and provider accounts")


class BookingService:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        clock: Clock,
        settings: BookingSettings,
        *,
        timezone: str,
        metrics: BookingMetrics,
    ) -> None:
        self._db = db
        self._outbox = outbox
        self._clock = clock
        self._settings = settings
        self._timezone = timezone
        self._zone = ZoneInfo(timezone)
        self._metrics = metrics

    def register(self, registry: MethodRegistry) -> None:
        add = registry.add
        add("bookings.create", self.create, params=CreateBooking, result=Booking, roles=CUSTOMERS)
        add("bookings.accept", self.accept, params=BookingStep, result=Booking, roles=PROVIDERS)
        add("bookings.reject", self.reject, params=RejectBooking, result=Booking, roles=PROVIDERS)
        add("bookings.start", self.start, params=BookingStep, result=Booking, roles=PROVIDERS)
        add("bookings.complete", self.complete, params=BookingStep, result=Booking, roles=PROVIDERS)
        add("bookings.cancel", self.cancel, params=CancelBooking, result=Booking, roles=CUSTOMERS)
        add("bookings.get", self.get, params=BookingRef, result=Booking, roles=BOTH)
        add("bookings.list", self.list, params=ListBookings, result=BookingPage, roles=BOTH)
        add(
            "bookings.unreadCount",
            self.unread_count,
            params=Empty,
            result=UnreadBookings,
            roles=BOTH,
        )
        add(
            "bookings.markViewed",
            self.mark_viewed,
            params=BookingRef,
            result=UnreadBookings,
            roles=BOTH,
        )
        add(
            "bookings.markAllViewed",
            self.mark_all_viewed,
            params=Empty,
            result=UnreadBookings,
            roles=BOTH,
        )

    # --- Creating ----------------------------------------------------------------------

    async def create(self, caller: Caller, params: CreateBooking) -> Booking:
        """Book a listing: chosen sub-services, an appointment, one of your addresses."""
        customer_id = caller.require_user()
        now = self._clock.now()
        staged = self._outbox.stage()
        async with self._db.transaction() as conn:
            place = await bookings.bookable(
                conn,
                customer_id,
                params.provider_service_id,
                list(params.sub_service_ids),
                now,
                params.address_id,
                key_claim(),
            )
            # Checked after the key's claim: a retry gets the first answer even once
            # the appointment has passed.
            self._check_appointment(params.appointment_at, now)
            if place is None:
                raise NotFound("no such provider listing", field="providerServiceId")
            if place.requires_labour_access and not (
                place.labour_access_until is not None and place.labour_access_until > now
            ):
                raise PaymentRequired(
                    "booking labour needs labour access: buy it with payments.initiate "
                    "{product: labourAccess}",
                    product="labourAccess",
                    reason="labour_access_required",
                )
            offered = {item["subServiceId"] for item in place.items}
            for i, sub in enumerate(params.sub_service_ids):
                if sub not in offered:
                    raise invalid((f"subServiceIds.{i}", "not offered by this provider"))
            if place.address is None:
                raise NotFound("no such address", field="addressId")
            row = self._new_booking(place, customer_id, params, now)
            title, body = CATALOGUE[NotificationType.BOOKING_REQUEST].render(
                {
                    "customer": place.customer_name or "A customer",
                    "service": place.service_name,
                    "when": self._when(params.appointment_at),
                }
            )
            note_row = NotificationRow(
                place.notification_id,
                place.provider_id,
                NotificationType.BOOKING_REQUEST,
                title,
                body,
                row.id,
                now,
                None,
            )
            mine = self._stage_offer(staged, row, note_row, now)
            await self._insert(conn, staged, row, note_row, params.address_id, now)
        await staged.deliver()
        self._metrics.bookings_created.inc()
        return mine

    def _stage_offer(
        self, staged: StagedEvents, row: BookingRow, note_row: NotificationRow, now: datetime
    ) -> Booking:
        """Stage a new booking's events and answer; returns the customer's view."""
        assert row.provider_id is not None and row.customer_id is not None
        provider_id = row.provider_id
        staged.add(
            provider_id,
            BOOKING_OFFERED,
            BookingOffered(booking=booking_view(row, Side.PROVIDER)),
            push_after=self._settings.offer_push_after,
            now=now,
        )
        staged.add(
            provider_id,
            NOTIFICATION_CREATED,
            NotificationCreated(notification=notification(note_row)),
        )
        # The counts go into the events as stand-ins the statement fills in.
        self._stage_badge(staged, provider_id, Side.PROVIDER, bookings.FILL_COUNTS)
        self._stage_earnings(staged, provider_id, bookings.FILL_COUNTS, now)
        mine = booking_view(row, Side.CUSTOMER)
        staged.add(row.customer_id, BOOKING_UPDATED, BookingUpdated(booking=mine, change="created"))
        staged.answer(mine)  # stored for the idempotencyKey with the booking
        return mine

    async def _insert(
        self,
        conn: Executor,
        staged: StagedEvents,
        row: BookingRow,
        note_row: NotificationRow,
        address_id: int,
        now: datetime,
    ) -> None:
        """One statement: the customer's limits, the booking, its notification, the
        counts and the staged events and answer."""

        async def store(
            events: list[NewEvent], answer: Answer | None
        ) -> tuple[list[int], dict[bytes, bytes]]:
            context, stored = await bookings.apply_create(
                conn,
                row,
                note_row,
                events,
                answer,
                address_id=address_id,
                max_per_minute=self._settings.max_per_minute,
                max_per_hour=self._settings.max_per_hour,
                timezone=self._timezone,
            )
            if stored is None:
                self._check_limits(context, now)
                raise Conflict(
                    "you have an open booking of this provider for this time already",
                    reason="duplicate_booking",
                )
            seqs, counts = stored
            return seqs, bookings.fills(counts)

        await staged.write_by(store)

    @staticmethod
    def _new_booking(
        place: bookings.Bookable, customer_id: int, params: CreateBooking, now: datetime
    ) -> BookingRow:
        """The booking as :func:`storage.bookings.apply_create` will store it: pending,
        viewed by the customer who made it, not yet by the provider."""
        assert place.address is not None
        return BookingRow(
            id=place.booking_id,
            status=Status.PENDING.value,
            customer_id=customer_id,
            provider_id=place.provider_id,
            provider_service_id=place.provider_service_id,
            service_id=place.service_id,
            service_slug=place.service_slug,
            service_name=place.service_name,
            customer_name=place.customer_name,
            provider_name=place.provider_name,
            items=place.items,
            charge_paise=sum(int(item["pricePaise"]) for item in place.items),
            appointment_at=params.appointment_at.astimezone(UTC),  # as read back
            address=place.address,
            description=params.description,
            rejection_reason=None,
            cancellation_reason=None,
            viewed_by_customer=True,
            viewed_by_provider=False,
            created_at=now,
            updated_at=now,
            completed_at=None,
            customer_rating=None,
            provider_rating=None,
        )

    def _check_appointment(self, at: datetime, now: datetime) -> None:
        if at <= now:
            raise Unprocessable(
                "the appointment must be in the future",
                reason="appointment_in_past",
                field="appointmentAt",
            )
        if at > now + timedelta(days=self._settings.max_days_ahead):
            raise Unprocessable(
                f"appointments at most {self._settings.max_days_ahead} days ahead",
                reason="appointment_too_far",
                field="appointmentAt",
                limit=self._settings.max_days_ahead,
            )

    def _check_limits(self, context: bookings.CustomerContext, now: datetime) -> None:
        s = self._settings
        windows = (
            (context.last_minute, s.max_per_minute, context.oldest_in_minute, 60, "minute"),
            (context.last_hour, s.max_per_hour, context.oldest_in_hour, 3600, "hour"),
        )
        for count, limit, oldest, seconds, name in windows:
            if count >= limit and oldest is not None:
                wait = (oldest + timedelta(seconds=seconds) - now).total_seconds()
                raise RateLimited(
                    f"at most {limit} bookings per {name}",
                    retry_after=max(wait, 0.001),
                    reason=f"bookings_per_{name}",
                    limit=limit,
                )

    def _when(self, at: datetime) -> str:
        return at.astimezone(self._zone).strftime("%d %b %Y, %I:%M %p")

    # --- Changing the status -----------------------------------------------------------

    async def accept(self, caller: Caller, params: BookingStep) -> Booking:
        """Accept a pending (or earlier rejected) booking."""
        return await self._change(caller, params.booking_id, Action.ACCEPT)

    async def reject(self, caller: Caller, params: RejectBooking) -> Booking:
        """Reject a pending or accepted booking, with a reason the customer sees."""
        return await self._change(caller, params.booking_id, Action.REJECT, params.reason)

    async def start(self, caller: Caller, params: BookingStep) -> Booking:
        """Start the job of an accepted booking."""
        return await self._change(caller, params.booking_id, Action.START)

    async def complete(self, caller: Caller, params: BookingStep) -> Booking:
        """Complete the job of an accepted or started booking (earnings count it)."""
        return await self._change(caller, params.booking_id, Action.COMPLETE)

    async def cancel(self, caller: Caller, params: CancelBooking) -> Booking:
        """Cancel your booking while it is pending or rejected."""
        return await self._change(caller, params.booking_id, Action.CANCEL, params.reason)

    async def _change(
        self, caller: Caller, booking_id: int, action: Action, reason: str | None = None
    ) -> Booking:
        user_id = caller.require_user()
        actor = side_of(caller)
        staged = self._outbox.stage()
        try:
            async with self._db.transaction() as conn:
                answer = await self._apply(conn, staged, user_id, actor, booking_id, action, reason)
        except UniqueViolation as exc:
            if exc.constraint != "bookings_open_slot_key":
                raise
            # Accepting a rejected booking whose slot the customer has booked again.
            raise Conflict(
                "the customer has another open booking of this listing for this time",
                reason="slot_taken",
                bookingId=booking_id,
            ) from None
        await staged.deliver()
        self._metrics.booking_transitions.labels(action.value).inc()
        return answer

    async def _apply(
        self,
        conn: Executor,
        staged: StagedEvents,
        user_id: int,
        actor: Side,
        booking_id: int,
        action: Action,
        reason: str | None,
    ) -> Booking:
        """Inside the transaction: lock, decide, then one statement for the change, its
        counts, its events and the answer (computed here from the locked row)."""
        now = self._clock.now()
        found = await bookings.lock_for_change(conn, booking_id, user_id, key_claim())
        if found is None or party(found.booking, actor) != user_id:
            raise NotFound("no such booking", field="bookingId")
        transition = self._decide(found.locked, actor, action)
        note = self._notification(transition, found.locked, reason)
        return await self._store_change(
            conn, staged, found, transition, note, reason, now, answers=True
        )

    async def _store_change(
        self,
        conn: Executor,
        staged: StagedEvents,
        found: bookings.ForChange,
        transition: rules.Transition,
        note: NewNotification,
        reason: str | None,
        now: datetime,
        *,
        answers: bool,
    ) -> Booking:
        """One statement for the change, the other side's notification, both sides'
        counts and every event (with ``answers``, also the request's answer, for its
        ``idempotencyKey``). Returns the booking as the actor sees it."""
        locked = found.locked
        actor = transition.actor
        row = bookings.with_status(
            found.booking, transition.after.value, actor=actor.value, reason=reason, now=now
        )
        note_row = None
        told = party(locked, transition.notify)
        if told is not None:
            note_row = NotificationRow(
                found.notification_id, told, note.type, note.title, note.body, row.id, now, None
            )
        # The counts go into the events as stand-ins the statement fills in.
        stand_ins = bookings.FILL_COUNTS
        if not transition.moves_earnings:
            stand_ins = Counts(stand_ins.unread, None)
        self._stage_change(staged, row, locked, transition, note_row, stand_ins, now)
        answer = booking_view(row, actor)
        if answers:
            staged.answer(answer)  # stored for the idempotencyKey with the change

        async def store(
            events: list[NewEvent], stored_answer: Answer | None
        ) -> tuple[list[int], dict[bytes, bytes]]:
            seqs, counts = await bookings.apply_status(
                conn,
                row,
                note_row,
                events,
                stored_answer,
                with_earnings=transition.moves_earnings,
                timezone=self._timezone,
            )
            return seqs, bookings.fills(counts)

        await staged.write_by(store)
        return answer

    def _decide(self, locked: LockedBooking, actor: Side, action: Action) -> rules.Transition:
        status = Status(locked.status)
        try:
            return rules.decide(status, actor, action)
        except rules.TransitionRefused as refused:
            self._metrics.booking_conflicts.labels(action.value).inc()
            if refused.reason == "wrong_side":
                raise Forbidden(f"only the other side may {action} a booking") from None
            raise StateConflict(
                f"the booking is {status.value}: it cannot be {action}ed now",
                bookingId=locked.id,
                status=status.value,
                action=action.value,
            ) from None

    def _notification(
        self, transition: rules.Transition, locked: LockedBooking, reason: str | None
    ) -> NewNotification:
        kind = _TOLD[transition.after]
        title, text = CATALOGUE[kind].render(
            {
                "service": locked.service_name,
                "when": self._when(locked.appointment_at),
                "customer": locked.customer_name or "The customer",
                "provider": locked.provider_name or "The provider",
                "reason": reason,  # required to reject, optional to cancel
            }
        )
        return NewNotification(transition.notify.value, kind, title, text)

    def _stage_change(
        self,
        staged: StagedEvents,
        row: BookingRow,
        locked: LockedBooking,
        transition: rules.Transition,
        note_row: bookings.NotificationRow | None,
        counts: Counts,
        now: datetime,
    ) -> None:
        for side in (Side.CUSTOMER, Side.PROVIDER):
            user_id = party(locked, side)
            if user_id is None:  # the account is gone
                continue
            staged.add(
                user_id,
                BOOKING_UPDATED,
                BookingUpdated(booking=booking_view(row, side), change=transition.after.value),
            )
            told = side is transition.notify
            if told and note_row is not None:
                staged.add(
                    user_id,
                    NOTIFICATION_CREATED,
                    NotificationCreated(notification=notification(note_row)),
                    # Pushed unless acknowledged in time (api/bookings/push.py).
                    push_after=self._settings.change_push_after,
                    now=now,
                )
            # The told side's badge goes up; the actor's goes down if it was unread.
            if side is Side.CUSTOMER:
                was_viewed = locked.viewed_by_customer
            else:
                was_viewed = locked.viewed_by_provider
            if told or not was_viewed:
                self._stage_badge(staged, user_id, side, counts)
            if side is Side.PROVIDER:
                self._stage_earnings(staged, user_id, counts, now)

    def _stage_badge(self, staged: StagedEvents, user_id: int, side: Side, counts: Counts) -> None:
        badge = UnreadBookings(as_=side.value, count=counts.unread[side.value])
        staged.add(user_id, BOOKING_UNREAD, badge, fill=True)

    def _stage_earnings(
        self, staged: StagedEvents, provider_id: int, counts: Counts, now: datetime
    ) -> None:
        if counts.earnings is not None:
            money = earnings(counts.earnings, self._timezone, now)
            staged.add(provider_id, EARNINGS_UPDATED, money, fill=True)

    # --- Closing an account ------------------------------------------------------------

    async def lock_for_closing(self, closing: Closing) -> list[int]:
        """Before an account is sealed for erasure: lock its unfinished bookings; their
        other parties will be told (:meth:`close_account`)."""
        return await erasure.lock_open_bookings(closing.conn, closing.user_id, closing.role)

    async def close_account(self, closing: Closing) -> None:
        """An account is being erased: cancel its unfinished bookings (pending, accepted,
        rejected or in progress), each with the usual events and a notification to the
        other side, which does not name the account."""
        side = Side(closing.role)
        for booking_id, other in await erasure.open_bookings(closing.conn, closing.user_id, side):
            if other is not None:
                closing.may_tell(other)
            found = await bookings.lock_for_change(closing.conn, booking_id, closing.user_id)
            if found is None:
                continue
            # The other side is told in the words that stay: no name, no address.
            found = dataclasses.replace(
                found, booking=erasure.erased_party(found.booking, side.value)
            )
            locked = found.locked
            transition = rules.Transition(
                before=Status(locked.status),
                after=Status.CANCELLED,
                action=Action.CANCEL,
                actor=side,
            )
            kind = NotificationType.BOOKING_PARTY_GONE
            title, body = CATALOGUE[kind].render(
                {
                    "side": side.value,
                    "service": locked.service_name,
                    "when": self._when(locked.appointment_at),
                }
            )
            note = NewNotification(transition.notify.value, kind, title, body)
            await self._store_change(
                closing.conn,
                closing.stage(),
                found,
                transition,
                note,
                ACCOUNT_CLOSED,
                closing.now,
                answers=False,
            )
            self._metrics.booking_transitions.labels("cancel").inc()

    # --- Reading -----------------------------------------------------------------------

    async def get(self, caller: Caller, params: BookingRef) -> Booking:
        """One of your bookings (it is not marked viewed: see bookings.markViewed)."""
        row = await bookings.get_booking(self._db, params.booking_id, caller.require_user())
        side = side_of(caller)
        if row is None or party(row, side) != caller.user_id:
            raise NotFound("no such booking", field="bookingId")
        return booking_view(row, side)

    async def list(self, caller: Caller, params: ListBookings) -> BookingPage:
        """Your bookings, newest first, of one status or all; keyset pages."""
        user_id = caller.require_user()
        side = side_of(caller)
        if params.as_ is not None and params.as_ != side.value:
            raise Forbidden(f"a {caller.role} account has its bookings as {side.value}")
        query = ("bookings", side.value, params.status)
        rows = await bookings.list_bookings(
            self._db,
            user_id,
            side.value,
            status=params.status,
            before_id=decode_cursor(params.cursor, query),
            limit=params.limit + 1,
        )
        return BookingPage(
            bookings=[booking_view(r, side) for r in rows[: params.limit]],
            next_cursor=next_cursor([r.id for r in rows], params.limit, query),
        )

    # --- Unread badges -----------------------------------------------------------------

    async def unread_count(self, caller: Caller, params: Empty) -> UnreadBookings:
        """Your bookings changed by the other side since you looked at them."""
        side = side_of(caller)
        count = await bookings.unread_count(self._db, caller.require_user(), side.value)
        return UnreadBookings(as_=side.value, count=count)

    async def mark_viewed(self, caller: Caller, params: BookingRef) -> UnreadBookings:
        """Mark one of your bookings viewed; returns your unread count."""
        return await self._mark_viewed(caller, params.booking_id)

    async def mark_all_viewed(self, caller: Caller, params: Empty) -> UnreadBookings:
        """Mark all your bookings viewed."""
        return await self._mark_viewed(caller, None)

    async def _mark_viewed(self, caller: Caller, booking_id: int | None) -> UnreadBookings:
        user_id = caller.require_user()
        side = side_of(caller)
        staged = self._outbox.stage()
        async with self._db.transaction() as conn:
            found, changed = await bookings.mark_viewed(conn, user_id, side.value, booking_id)
            if not found:
                raise NotFound("no such booking", field="bookingId")
            badge = UnreadBookings(
                as_=side.value, count=await bookings.unread_count(conn, user_id, side.value)
            )
            if changed:  # the user's other devices update their badge
                staged.add(user_id, BOOKING_UNREAD, badge)
                await staged.write(conn)
        if changed:
            await staged.deliver()
        return badge


def party(booking: LockedBooking | BookingRow, side: Side) -> int | None:
    """The booking's user on ``side`` (None once that account is gone)."""
    return booking.customer_id if side is Side.CUSTOMER else booking.provider_id
