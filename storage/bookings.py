"""Queries of bookings: creating one, locking and changing its status, lists and pages,
unread badges and the provider's earnings.

Every query that reads a booking for a user names the user as its customer or its
provider: a booking is never reachable by id alone. Booking rows never carry a phone
number. A transaction that writes events about bookings locks the users' event
cursors (:func:`storage.events.lock_cursors_sql`) before it counts badges or earnings,
so the counts in a user's events follow their ``seq`` order.

A change is two statements between BEGIN and COMMIT. The first claims the call's
idempotency key (:class:`storage.idempotency.KeyClaim`, optional), takes the locks and
reads what the change needs, reserving the ids of new rows (:func:`bookable`,
:func:`lock_for_change`). The caller then computes the new row (:func:`with_status`,
or a new booking) and builds its events from it, with stand-ins for the counts
(:data:`FILL_COUNTS`). The second statement stores the row, the notification, the
events with the counts filled in (counted after the first statement locked the
cursors) and the call's answer (:func:`apply_create`, :func:`apply_status`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson

from storage.events import (
    Answer,
    Executor,
    NewEvent,
    answer_sql,
    append_each_sql,
    event_args,
    lock_cursors_sql,
)
from storage.idempotency import KeyClaim, KeyTaken, claim_sql

Side = Literal["customer", "provider"]
SIDES: tuple[Side, ...] = ("customer", "provider")
OPEN_WORK = ("pending", "accepted", "in_progress")


@dataclass(frozen=True, slots=True)
class RatingRow:
    stars: int
    review: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class BookingRow:
    id: int
    status: str
    customer_id: int | None
    provider_id: int | None
    provider_service_id: int | None
    service_id: int | None
    service_slug: str
    service_name: str
    customer_name: str | None
    provider_name: str | None
    items: list[dict[str, Any]]
    charge_paise: int
    appointment_at: datetime
    address: dict[str, Any]
    description: str | None
    rejection_reason: str | None
    cancellation_reason: str | None
    viewed_by_customer: bool
    viewed_by_provider: bool
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    customer_rating: RatingRow | None  # the customer's rating of the provider
    provider_rating: RatingRow | None  # the provider's rating of the customer


@dataclass(frozen=True, slots=True)
class NotificationRow:
    id: int
    user_id: int
    type: str
    title: str
    body: str
    booking_id: int | None
    created_at: datetime
    read_at: datetime | None


@dataclass(frozen=True, slots=True)
class NewNotification:
    """A notification to insert with a booking change; its user is the booking's
    customer or provider (``side``)."""

    side: Side
    type: str
    title: str
    body: str


# One joined query shape for every booking read: the customer's and provider's current
# names (the snapshot once an account is gone), the service's current name, both ratings.
# ``b`` is the bookings table or a CTE of its rows (INSERT/UPDATE ... RETURNING *).
_COLUMNS = """
    b.id, b.status, b.customer_id, b.provider_id, b.provider_service_id, b.service_id,
    b.service_slug, coalesce(s.name, b.service_name) AS service_name,
    coalesce(cu.full_name, b.customer_name) AS customer_name,
    coalesce(pu.full_name, b.provider_name) AS provider_name,
    b.items::text AS items, b.charge_paise, b.appointment_at, b.address::text AS address,
    b.description, b.rejection_reason, b.cancellation_reason,
    b.viewed_by_customer, b.viewed_by_provider, b.created_at, b.updated_at, b.completed_at,
    rc.stars AS rc_stars, rc.review AS rc_review, rc.created_at AS rc_created_at,
    rp.stars AS rp_stars, rp.review AS rp_review, rp.created_at AS rp_created_at
"""
_JOINS = """
    LEFT JOIN users cu ON cu.id = b.customer_id
    LEFT JOIN users pu ON pu.id = b.provider_id
    LEFT JOIN services s ON s.id = b.service_id
    LEFT JOIN ratings rc ON rc.booking_id = b.id AND rc.rater_side = 'customer'
    LEFT JOIN ratings rp ON rp.booking_id = b.id AND rp.rater_side = 'provider'
"""
_NOTIFICATION_COLUMNS = "id, user_id, type, title, body, booking_id, created_at, read_at"


def _rating(row: Any, prefix: str) -> RatingRow | None:
    stars = row[f"{prefix}_stars"]
    if stars is None:
        return None
    return RatingRow(stars, row[f"{prefix}_review"], row[f"{prefix}_created_at"])


def booking_row(row: Any) -> BookingRow:
    fields = {
        k: row[k] for k in BookingRow.__slots__ if k not in ("customer_rating", "provider_rating")
    }
    fields["items"] = orjson.loads(fields["items"])
    fields["address"] = orjson.loads(fields["address"])
    return BookingRow(
        **fields, customer_rating=_rating(row, "rc"), provider_rating=_rating(row, "rp")
    )


def notification_row(row: Any, prefix: str = "") -> NotificationRow:
    return NotificationRow(*(row[prefix + k] for k in NotificationRow.__slots__))


# --- Creating ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bookable:
    """A listed registration and the chosen sub-services it prices."""

    provider_service_id: int
    provider_id: int
    service_id: int
    service_slug: str
    service_name: str
    provider_name: str | None
    items: list[dict[str, Any]]  # {subServiceId, slug, name, pricePaise}, the ones priced
    customer_name: str | None
    address: dict[str, Any] | None  # the customer's address asked for (None: not theirs)
    requires_labour_access: bool  # a labour listing: the customer needs labour access
    labour_access_until: datetime | None  # the customer's, if ever bought
    booking_id: int  # reserved for the booking
    notification_id: int  # reserved for the provider's notification


def _claiming(with_claim: bool, first: int) -> tuple[str, str, str]:
    """The claim CTE (parameters from ``first``), the condition that makes the locks of
    the statement wait for it (claim first, so that retries of one key queue on the key
    and hold nothing else), and the ``claimed`` output column."""
    if not with_claim:
        return "", "", "1 AS claimed"
    return (
        f"claim AS ({claim_sql(first)}),",
        "AND EXISTS (SELECT FROM claim)",
        "(SELECT count(*) FROM claim) AS claimed",
    )


@functools.cache
def _bookable_sql(with_claim: bool) -> str:
    claim_cte, after_claim, claimed = _claiming(with_claim, 6)
    return f"""
        WITH {claim_cte} r AS (
            SELECT ps.id, ps.provider_id, ps.service_id, s.slug, s.name,
                   s.requires_labour_access, u.full_name AS provider_name,
                   (SELECT json_agg(json_build_object(
                               'subServiceId', ss.id, 'slug', ss.slug, 'name', ss.name,
                               'pricePaise', p.price_paise) ORDER BY ss.position, ss.id)
                    FROM provider_service_prices p
                    JOIN sub_services ss ON ss.id = p.sub_service_id
                    WHERE p.provider_service_id = ps.id
                      AND p.sub_service_id = ANY($2::bigint[])) AS items
            FROM provider_services ps
            JOIN users u ON u.id = ps.provider_id
            JOIN services s ON s.id = ps.service_id
            WHERE ps.id = $1 AND ps.status = 'active'
              AND (ps.active_until IS NULL OR ps.active_until > $3)
              AND u.is_active AND s.is_active {after_claim}
            -- Held until commit: providers.removeService (FOR UPDATE) waits for it.
            FOR KEY SHARE OF ps
        ), locked AS (
            {lock_cursors_sql("(SELECT ARRAY[$4::bigint, provider_id] FROM r)")}
        )
        SELECT {claimed}, r.*, (SELECT full_name FROM users WHERE id = $4) AS customer_name,
               (SELECT active_until FROM labour_access WHERE user_id = $4)
                   AS labour_access_until,
               (SELECT jsonb_build_object('type', a.type, 'state', a.state, 'city', a.city,
                                          'fullAddress', a.full_address, 'pincode', a.pincode)
                FROM addresses a WHERE a.id = $5 AND a.user_id = $4)::text AS address,
               CASE WHEN r.id IS NOT NULL
                    THEN nextval(pg_get_serial_sequence('bookings', 'id')) END AS booking_id,
               CASE WHEN r.id IS NOT NULL
                    THEN nextval(pg_get_serial_sequence('notifications', 'id')) END
                   AS notification_id,
               (SELECT count(*) FROM locked) AS locked
        FROM (SELECT) one LEFT JOIN r ON true
        """


async def bookable(
    conn: Executor,
    customer_id: int,
    provider_service_id: int,
    sub_service_ids: list[int],
    now: datetime,
    address_id: int,
    claim: KeyClaim | None = None,
) -> Bookable | None:
    """The registration if it is listed (active, not past its end, of an active account
    and service), with the prices of those of ``sub_service_ids`` it offers and the
    customer's address ``address_id``; None if not listed. Also locks the customer's
    and provider's event cursors (see the module docstring): the customer's creations
    are counted one after another. With ``claim``, claims the idempotency key first
    (:class:`KeyTaken` if it is taken). Reserves the ids of the booking and of its
    notification (:func:`apply_create`)."""
    row = await conn.fetchrow(
        _bookable_sql(claim is not None),
        provider_service_id,
        sub_service_ids,
        now,
        customer_id,
        address_id,
        *(claim.args() if claim is not None else ()),
    )
    if not row["claimed"]:
        raise KeyTaken
    if row["id"] is None:
        return None
    return Bookable(
        provider_service_id=row["id"],
        provider_id=row["provider_id"],
        service_id=row["service_id"],
        service_slug=row["slug"],
        service_name=row["name"],
        provider_name=row["provider_name"],
        items=orjson.loads(row["items"]) if row["items"] else [],
        customer_name=row["customer_name"],
        address=orjson.loads(row["address"]) if row["address"] else None,
        requires_labour_access=row["requires_labour_access"],
        labour_access_until=row["labour_access_until"],
        booking_id=row["booking_id"],
        notification_id=row["notification_id"],
    )


@dataclass(frozen=True, slots=True)
class CustomerContext:
    """What creating a booking checks of its customer: the bookings they created in the
    minute and the hour before now (and the oldest of each)."""

    last_minute: int
    oldest_in_minute: datetime | None
    last_hour: int
    oldest_in_hour: datetime | None


@functools.cache
def _apply_create_sql(with_answer: bool) -> str:
    # A new booking is viewed by its customer: their badge does not move, and is not
    # counted (nor sent).
    fill = "i.payload"
    for column in _STAND_INS:
        if column != "unread_customer":
            fill = f"replace({fill}, '{_STAND_INS[column]}', (SELECT {column} FROM c)::text)"
    events, seqs = append_each_sql(24, fill, only_if="EXISTS (SELECT FROM b)")
    sql = f"""
        WITH ctx AS (
            SELECT count(*) FILTER (WHERE created_at > $NOW::timestamptz - interval '1 minute')
                       AS last_minute,
                   min(created_at) FILTER (
                       WHERE created_at > $NOW::timestamptz - interval '1 minute')
                       AS oldest_in_minute,
                   count(*) AS last_hour, min(created_at) AS oldest_in_hour
            FROM bookings
            WHERE customer_id = $2 AND created_at > $NOW::timestamptz - interval '1 hour'
        ), b AS (
            INSERT INTO bookings (id, customer_id, provider_id, provider_service_id, service_id,
                                  service_slug, service_name, customer_name, provider_name,
                                  items, charge_paise, appointment_at, address_id, address,
                                  description, created_at, updated_at)
            OVERRIDING SYSTEM VALUE
            SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12, $13, $14::jsonb,
                   $15, $NOW, $NOW
            FROM ctx WHERE ctx.last_minute < $17 AND ctx.last_hour < $18
            ON CONFLICT (customer_id, provider_service_id, appointment_at)
                WHERE status IN ('pending', 'accepted', 'in_progress') DO NOTHING
            RETURNING *
        ), n AS (
            INSERT INTO notifications (id, user_id, type, title, body, booking_id, created_at)
            OVERRIDING SYSTEM VALUE
            SELECT $19, b.provider_id, $20, $21, $22, b.id, $NOW FROM b
        ), {_EARNINGS_AFTER}, c AS (
            SELECT {_UNREAD_PROVIDER_AFTER} AS unread_provider, e.* FROM b CROSS JOIN e
        ), {events}{", " + answer_sql(29) if with_answer else ""}
        SELECT ctx.*, (SELECT count(*) FROM b) AS inserted, {seqs}, c.*
        FROM ctx LEFT JOIN c ON true
    """
    return sql.replace("$NOW", "$16").replace("$TZ", "$23")


async def apply_create(
    conn: Executor,
    booking: BookingRow,
    notification: NotificationRow,
    events: Sequence[NewEvent],
    answer: Answer | None,
    *,
    address_id: int,
    max_per_minute: int,
    max_per_hour: int,
    timezone: str,
) -> tuple[CustomerContext, tuple[list[int], Counts] | None]:
    """After :func:`bookable` (the locks, the reserved ids): check the customer's limits
    and insert ``booking`` (as the caller built it, pending) with the provider's
    ``notification``, count the badges and earnings after it, and store ``events``
    (those flagged ``fill`` get the counts for :data:`FILL_COUNTS`) and ``answer``: one
    statement. Returns the customer's context and, if the booking was inserted, the
    events' seqs and the counts; None when a limit is reached or the customer has an
    open booking of that registration for that slot already (roll back then)."""
    row = await conn.fetchrow(
        _apply_create_sql(answer is not None),
        booking.id,
        booking.customer_id,
        booking.provider_id,
        booking.provider_service_id,
        booking.service_id,
        booking.service_slug,
        booking.service_name,
        booking.customer_name,
        booking.provider_name,
        orjson.dumps(booking.items).decode(),
        booking.charge_paise,
        booking.appointment_at,
        address_id,
        orjson.dumps(booking.address).decode(),
        booking.description,
        booking.created_at,
        max_per_minute,
        max_per_hour,
        notification.id,
        notification.type,
        notification.title,
        notification.body,
        timezone,
        *event_args(events, with_fill=True),
        *(answer.args() if answer is not None else ()),
    )
    context = CustomerContext(
        last_minute=row["last_minute"],
        oldest_in_minute=row["oldest_in_minute"],
        last_hour=row["last_hour"],
        oldest_in_hour=row["oldest_in_hour"],
    )
    if not row["inserted"]:
        return context, None
    counts = _counts_after(row, with_earnings=True, sides=("provider",))
    return context, (list(row["seqs"] or []), counts)


# --- Changing the status -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LockedBooking:
    """What deciding a change and wording its notification need."""

    id: int
    status: str
    customer_id: int | None
    provider_id: int | None
    provider_service_id: int | None
    viewed_by_customer: bool
    viewed_by_provider: bool
    service_name: str
    customer_name: str | None
    provider_name: str | None
    appointment_at: datetime


async def lock_booking(conn: Executor, booking_id: int, user_id: int) -> LockedBooking | None:
    """Row-lock the booking of which ``user_id`` is the customer or the provider.

    ``FOR NO KEY UPDATE``: as exclusive as ``FOR UPDATE`` against other changes of the
    booking, but it lets rows that reference it (notifications, ratings, reports) be
    inserted meanwhile: their foreign key checks take a key share lock, which
    ``FOR UPDATE`` would block (and, with a lock on the user taken in the other order,
    could deadlock)."""
    row = await conn.fetchrow(
        """
        SELECT id, status, customer_id, provider_id, provider_service_id, viewed_by_customer,
               viewed_by_provider, service_name, customer_name, provider_name, appointment_at
        FROM bookings WHERE id = $1 AND (customer_id = $2 OR provider_id = $2)
        FOR NO KEY UPDATE
        """,
        booking_id,
        user_id,
    )
    return None if row is None else LockedBooking(*(row[k] for k in LockedBooking.__slots__))


@functools.cache
def _lock_for_change_sql(with_claim: bool) -> str:
    claim_cte, after_claim, claimed = _claiming(with_claim, 3)
    return f"""
        WITH {claim_cte} l AS (
            SELECT * FROM bookings
            WHERE id = $1 AND (customer_id = $2 OR provider_id = $2) {after_claim}
            FOR NO KEY UPDATE
        ), locked AS (
            {lock_cursors_sql("(SELECT ARRAY[customer_id, provider_id] FROM l)")}
        )
        SELECT {claimed}, {_COLUMNS},
               b.service_name AS l_service_name, b.customer_name AS l_customer_name,
               b.provider_name AS l_provider_name,
               CASE WHEN b.id IS NOT NULL
                    THEN nextval(pg_get_serial_sequence('notifications', 'id')) END
                   AS next_notification_id,
               (SELECT count(*) FROM locked) AS locked
        FROM (SELECT) one LEFT JOIN l AS b ON true {_JOINS}
        """


@dataclass(frozen=True, slots=True)
class ForChange:
    """A booking locked for a status change (:func:`lock_for_change`)."""

    locked: LockedBooking  # as stored (the names snapshotted at booking)
    booking: BookingRow  # as the sides see it
    notification_id: int  # reserved for the notification of the change


async def lock_for_change(
    conn: Executor, booking_id: int, user_id: int, claim: KeyClaim | None = None
) -> ForChange | None:
    """:func:`lock_booking` for a status change: with ``claim``, first claims the
    idempotency key (:class:`KeyTaken` if it is taken); then also locks both users'
    event cursors (see the module docstring), for :func:`apply_status` to count under.
    Returns the booking as read, so that the change and its events can be computed
    before the one statement that stores them."""
    row = await conn.fetchrow(
        _lock_for_change_sql(claim is not None),
        booking_id,
        user_id,
        *(claim.args() if claim is not None else ()),
    )
    if not row["claimed"]:
        raise KeyTaken
    if row["id"] is None:
        return None
    booking = booking_row(row)
    locked = LockedBooking(
        id=booking.id,
        status=booking.status,
        customer_id=booking.customer_id,
        provider_id=booking.provider_id,
        provider_service_id=booking.provider_service_id,
        viewed_by_customer=booking.viewed_by_customer,
        viewed_by_provider=booking.viewed_by_provider,
        service_name=row["l_service_name"],
        customer_name=row["l_customer_name"],
        provider_name=row["l_provider_name"],
        appointment_at=booking.appointment_at,
    )
    return ForChange(locked, booking, row["next_notification_id"])


def with_status(
    booking: BookingRow, status: str, *, actor: Side, reason: str | None, now: datetime
) -> BookingRow:
    """The booking after a change to ``status`` by ``actor`` (``reason`` of a rejection
    or cancellation): viewed by the actor, unviewed by the other side. What
    :func:`apply_status` stores."""
    return dataclasses.replace(
        booking,
        status=status,
        updated_at=now,
        rejection_reason=(
            reason
            if status == "rejected"
            else None
            if status == "accepted"
            else booking.rejection_reason
        ),
        cancellation_reason=reason if status == "cancelled" else booking.cancellation_reason,
        completed_at=now if status == "completed" else booking.completed_at,
        viewed_by_customer=actor == "customer",
        viewed_by_provider=actor == "provider",
    )


@functools.cache
def _apply_status_sql(with_earnings: bool, with_answer: bool) -> str:
    columns = list(_STAND_INS) if with_earnings else ["unread_customer", "unread_provider"]
    fill = "i.payload"
    for column in columns:
        fill = f"replace({fill}, '{_STAND_INS[column]}', (SELECT {column} FROM c)::text)"
    first = 15 if with_earnings else 14  # $14: the time zone of the earnings
    events, seqs = append_each_sql(first, fill)
    earnings_cte = f", {_EARNINGS_AFTER}" if with_earnings else ""
    sql = f"""
        WITH b AS (
            UPDATE bookings SET
                status = $2, updated_at = $3, rejection_reason = $4, cancellation_reason = $5,
                completed_at = $6, viewed_by_customer = $7, viewed_by_provider = $8
            WHERE id = $1
            RETURNING *
        ), n AS (
            INSERT INTO notifications (id, user_id, type, title, body, booking_id, created_at)
            OVERRIDING SYSTEM VALUE
            SELECT $9, $10, $11, $12, $13, $1, $3 WHERE $9::bigint IS NOT NULL
        ){earnings_cte}, c AS (
            SELECT {_UNREAD_CUSTOMER_AFTER} AS unread_customer,
                   {_UNREAD_PROVIDER_AFTER} AS unread_provider{", e.*" if with_earnings else ""}
            FROM b{" CROSS JOIN e" if with_earnings else ""}
        ), {events}{", " + answer_sql(first + 5) if with_answer else ""}
        SELECT {seqs}, c.* FROM c
    """
    return sql.replace("$NOW", "$3").replace("$TZ", "$14")


async def apply_status(
    conn: Executor,
    booking: BookingRow,
    notification: NotificationRow | None,
    events: Sequence[NewEvent],
    answer: Answer | None,
    *,
    with_earnings: bool,
    timezone: str,
) -> tuple[list[int], Counts]:
    """Store ``booking`` (:func:`with_status` of the row :func:`lock_for_change` read)
    and the other side's ``notification`` (its id from :func:`lock_for_change`), count
    both sides' badges and, ``with_earnings``, the provider's earnings after the change,
    and store ``events`` (those flagged ``fill`` get the counts for :data:`FILL_COUNTS`)
    and ``answer``: one statement. Returns the events' seqs and the counts."""
    note: tuple[Any, ...] = (None,) * 5
    if notification is not None:
        n = notification
        note = (n.id, n.user_id, n.type, n.title, n.body)
    row = await conn.fetchrow(
        _apply_status_sql(with_earnings, answer is not None),
        booking.id,
        booking.status,
        booking.updated_at,
        booking.rejection_reason,
        booking.cancellation_reason,
        booking.completed_at,
        booking.viewed_by_customer,
        booking.viewed_by_provider,
        *note,
        *((timezone,) if with_earnings else ()),
        *event_args(events, with_fill=True),
        *(answer.args() if answer is not None else ()),
    )
    return list(row["seqs"] or []), _counts_after(row, with_earnings=with_earnings)


# --- Reading -----------------------------------------------------------------------------


def _side_column(side: Side) -> str:
    if side not in SIDES:
        raise ValueError(f"not a side: {side!r}")
    return f"b.{side}_id"


async def get_booking(db: Executor, booking_id: int, user_id: int) -> BookingRow | None:
    row = await db.fetchrow(
        f"""
        SELECT {_COLUMNS} FROM bookings b {_JOINS}
        WHERE b.id = $1 AND (b.customer_id = $2 OR b.provider_id = $2)
        """,
        booking_id,
        user_id,
    )
    return None if row is None else booking_row(row)


async def list_bookings(
    db: Executor,
    user_id: int,
    side: Side,
    *,
    status: str | None,
    before_id: int | None,
    limit: int,
) -> list[BookingRow]:
    """The user's bookings on ``side``, newest first, ``limit`` before ``before_id``
    (keyset); one joined query. The two shapes (with or without a status) each match
    one composite index, (side, status, id) or (side, id)."""
    column = _side_column(side)
    where = f"{column} = $1 AND b.id < $2"
    args: list[Any] = [user_id, before_id or 2**63 - 1, limit]
    if status is not None:
        where += " AND b.status = $4"
        args.append(status)
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM bookings b {_JOINS} WHERE {where} ORDER BY b.id DESC LIMIT $3",
        *args,
    )
    return [booking_row(r) for r in rows]


async def open_bookings_of_registration(db: Executor, provider_service_id: int) -> int:
    count: int = await db.fetchval(
        """
        SELECT count(*) FROM bookings
        WHERE provider_service_id = $1 AND status IN ('pending', 'accepted', 'in_progress')
        """,
        provider_service_id,
    )
    return count


# --- Unread badges -----------------------------------------------------------------------


async def unread_count(db: Executor, user_id: int, side: Side) -> int:
    column = _side_column(side)
    count: int = await db.fetchval(
        f"SELECT count(*) FROM bookings b WHERE {column} = $1 AND NOT b.viewed_by_{side}",
        user_id,
    )
    return count


async def mark_viewed(
    conn: Executor, user_id: int, side: Side, booking_id: int | None
) -> tuple[bool, int]:
    """Mark one booking (or, with None, every one) of the user's viewed on their side,
    then lock their event cursor. Returns (whether that booking is theirs, how many
    bookings changed)."""
    column = _side_column(side)
    flag = f"viewed_by_{side}"
    if booking_id is None:
        target = (
            f"SELECT b.id, b.{flag} AS viewed FROM bookings b WHERE {column} = $1 AND NOT b.{flag}"
        )
        args: list[Any] = [user_id]
    else:
        target = (
            f"SELECT b.id, b.{flag} AS viewed FROM bookings b WHERE {column} = $1 AND b.id = $2"
        )
        args = [user_id, booking_id]
    row = await conn.fetchrow(
        f"""
        WITH target AS ({target}), changed AS (
            UPDATE bookings b SET {flag} = true
            FROM target t WHERE b.id = t.id AND NOT t.viewed
            RETURNING b.id
        ), locked AS (
            {lock_cursors_sql("ARRAY[$1::bigint]")}
        )
        SELECT (SELECT count(*) FROM target) AS found, (SELECT count(*) FROM changed) AS changed,
               (SELECT count(*) FROM locked) AS locked
        """,
        *args,
    )
    return booking_id is None or row["found"] > 0, row["changed"]


# --- Counts that go into events ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EarningsRow:
    this_month_paise: int
    today_paise: int
    pending_paise: int


# The provider's earnings ($1 provider, $2 now, $3 time zone): completed this month and
# today by completion time on the zone's calendar, and the open work.
_EARNINGS = """
    SELECT
        coalesce(sum(b.charge_paise) FILTER (WHERE b.status = 'completed'), 0) AS month,
        coalesce(sum(b.charge_paise) FILTER (
            WHERE b.status = 'completed' AND b.completed_at >= bounds.day), 0) AS today,
        coalesce(sum(b.charge_paise) FILTER (WHERE b.status <> 'completed'), 0) AS pending
    FROM (SELECT date_trunc('month', $2::timestamptz, $3::text) AS month,
                 date_trunc('day', $2::timestamptz, $3::text) AS day) bounds
    LEFT JOIN bookings b ON b.provider_id = $1 AND (
        b.status IN ('pending', 'accepted', 'in_progress')
        OR (b.status = 'completed' AND b.completed_at >= bounds.month))
"""


async def earnings(db: Executor, provider_id: int, now: datetime, timezone: str) -> EarningsRow:
    """Completed this month and today (calendar of ``timezone``, by completion time),
    and the open work (pending, accepted, in progress), in paise."""
    row = await db.fetchrow(_EARNINGS, provider_id, now, timezone)
    return EarningsRow(int(row["month"]), int(row["today"]), int(row["pending"]))


@dataclass(frozen=True, slots=True)
class Counts:
    unread: dict[Side, int]  # by side; after a creation only the provider's
    earnings: EarningsRow | None


# The counts after a change, in the statement that makes it (CTE ``b``: the booking as
# inserted or updated). The statement's other reads do not see its own change, so the
# booking's old version is left out and its new one added. ($NOW, $TZ: now, time zone.)
_UNREAD_CUSTOMER_AFTER = """
    (SELECT count(*) FROM bookings x
     WHERE x.customer_id = b.customer_id AND NOT x.viewed_by_customer AND x.id <> b.id)
        + (NOT b.viewed_by_customer)::int
"""
_UNREAD_PROVIDER_AFTER = """
    (SELECT count(*) FROM bookings x
     WHERE x.provider_id = b.provider_id AND NOT x.viewed_by_provider AND x.id <> b.id)
        + (NOT b.viewed_by_provider)::int
"""
_EARNINGS_AFTER = """
    e AS (
        SELECT
            coalesce(sum(w.charge_paise) FILTER (WHERE w.status = 'completed'), 0) AS e_month,
            coalesce(sum(w.charge_paise) FILTER (
                WHERE w.status = 'completed'
                  AND w.completed_at >= date_trunc('day', $NOW::timestamptz, $TZ::text)), 0)
                AS e_today,
            coalesce(sum(w.charge_paise) FILTER (WHERE w.status <> 'completed'), 0) AS e_pending
        FROM (
            -- The open work and the month's completed work each on its index
            -- ((provider, status, id); (provider, completed_at) of the completed), not
            -- every booking the provider ever had.
            SELECT x.status, x.charge_paise, x.completed_at
            FROM b JOIN bookings x ON x.provider_id = b.provider_id AND x.id <> b.id
                AND x.status IN ('pending', 'accepted', 'in_progress')
            UNION ALL
            SELECT x.status, x.charge_paise, x.completed_at
            FROM b JOIN bookings x ON x.provider_id = b.provider_id AND x.id <> b.id
                AND x.status = 'completed'
                AND x.completed_at >= date_trunc('month', $NOW::timestamptz, $TZ::text)
            UNION ALL
            SELECT b.status, b.charge_paise, b.completed_at FROM b
            WHERE b.status IN ('pending', 'accepted', 'in_progress')
               OR (b.status = 'completed'
                   AND b.completed_at >= date_trunc('month', $NOW::timestamptz, $TZ::text))
        ) w
    )
"""


def _counts_after(row: Any, *, with_earnings: bool, sides: tuple[Side, ...] = SIDES) -> Counts:
    """The counts a statement read: the badges of ``sides`` and, ``with_earnings``, the
    provider's earnings."""
    money = None
    if with_earnings:
        money = EarningsRow(int(row["e_month"]), int(row["e_today"]), int(row["e_pending"]))
    return Counts({side: row[f"unread_{side}"] for side in sides}, money)


# Stand-ins for the counts in the events of a change, replaced by the statement that
# counts them (:func:`apply_status`) and, in the copies sent live, by the caller
# (:func:`fills`); only in events flagged ``fill``, whose payloads hold no user text.
_STAND_INS = {
    "unread_customer": -9_000_000_000_000_001,
    "unread_provider": -9_000_000_000_000_002,
    "e_month": -9_000_000_000_000_003,
    "e_today": -9_000_000_000_000_004,
    "e_pending": -9_000_000_000_000_005,
}
FILL_COUNTS = Counts(
    {"customer": _STAND_INS["unread_customer"], "provider": _STAND_INS["unread_provider"]},
    EarningsRow(_STAND_INS["e_month"], _STAND_INS["e_today"], _STAND_INS["e_pending"]),
)


def _count_values(counts: Counts) -> dict[str, int]:
    values = {f"unread_{side}": count for side, count in counts.unread.items()}
    if counts.earnings is not None:
        values |= {
            "e_month": counts.earnings.this_month_paise,
            "e_today": counts.earnings.today_paise,
            "e_pending": counts.earnings.pending_paise,
        }
    return values


def fills(counts: Counts) -> dict[bytes, bytes]:
    """Stand-in -> value, for the live copies of the events :func:`apply_status` filled."""
    return {
        str(_STAND_INS[column]).encode(): str(value).encode()
        for column, value in _count_values(counts).items()
    }
