"""Erasing an account (``me.delete``, and ``admin.users.remove``), in the caller's
transaction.

The ``users`` row is deleted: what is the account's own goes with it by the foreign
keys' ``ON DELETE CASCADE`` (sessions and refresh tokens, addresses, push devices,
notifications, its event log and cursors, idempotency keys, the provider profile and
listings, labour access, reminders sent). What others rely on keeps its row and loses
the account by ``ON DELETE SET NULL`` (bookings, ratings, reports, calls, recording
legs, payments and paid periods): a null party reads as :data:`DELETED_NAME`. Bookings
also snapshot the names and the address as they were when booked; those snapshots are
overwritten here first, so no view can fall back to them.

Locking, against the account's own requests and the other sides' changes running
at the same time, in the order those writers take the same rows: the user row
(:func:`lock_account`, which lets references to it be inserted meanwhile), the rows
the closing steps will change (its open bookings, :func:`lock_open_bookings`), then
the event cursors of the account and of everyone the steps will tell (one statement,
user id order, as every writer of events takes them). Holding the account's cursor is
what seals it: a booking cannot be created or changed, nor an event written for the
account, without that lock, and whoever held it before has committed, so the steps
then find everything there is (a booking created meanwhile included). What still waits
on the cursor fails on its foreign key once the account is gone. A booking created
just before that with someone whose cursor is not locked (its row was not there to
find yet) makes the erasure start again at once, now finding it
(:class:`api.erasure.Restart`); a deadlock PostgreSQL breaks does too
(:meth:`api.erasure.Erasure.run`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from uuid import UUID

from storage.bookings import BookingRow
from storage.events import Executor

#: How a party whose account was erased is named wherever it appears.
DELETED_NAME = "Deleted user"

#: What stays of a booking's address once its customer's account is erased.
KEPT_ADDRESS = ("type", "city", "state")

#: Bookings not finished: erasing an account cancels its bookings in these.
OPEN_STATUSES = ("pending", "accepted", "rejected", "in_progress")


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    phone: str
    email: str | None
    role: str


async def find_account(conn: Executor, user_id: int) -> Account | None:
    row = await conn.fetchrow("SELECT id, phone, email, role FROM users WHERE id = $1", user_id)
    return None if row is None else Account(row["id"], row["phone"], row["email"], row["role"])


async def lock_account(conn: Executor, user_id: int) -> Account | None:
    """Take the account for erasure: two erasures of one account run one after the
    other (``FOR NO KEY UPDATE``: rows that reference it can still be inserted)."""
    row = await conn.fetchrow(
        "SELECT id, phone, email, role FROM users WHERE id = $1 FOR NO KEY UPDATE", user_id
    )
    return None if row is None else Account(row["id"], row["phone"], row["email"], row["role"])


def _side_column(side: str) -> str:
    return {"customer": "customer_id", "provider": "provider_id"}[side]


async def _open_bookings(
    conn: Executor, user_id: int, side: str, *, lock: bool
) -> list[tuple[int, int | None]]:
    other = "provider_id" if side == "customer" else "customer_id"
    rows = await conn.fetch(
        f"SELECT id, {other} AS other FROM bookings"
        f" WHERE {_side_column(side)} = $1 AND status = ANY($2::text[])"
        f" ORDER BY id{' FOR NO KEY UPDATE' if lock else ''}",
        user_id,
        list(OPEN_STATUSES),
    )
    return [(r["id"], r["other"]) for r in rows]


async def lock_open_bookings(conn: Executor, user_id: int, side: str) -> list[int]:
    """Row-lock the account's unfinished bookings on ``side`` in id order (as a booking
    change does, before the event cursors); returns the other parties of them."""
    found = await _open_bookings(conn, user_id, side, lock=True)
    return [other for _, other in found if other is not None]


async def open_bookings(conn: Executor, user_id: int, side: str) -> list[tuple[int, int | None]]:
    """The account's bookings on ``side`` that are not finished, oldest first: (id, the
    other party)."""
    return await _open_bookings(conn, user_id, side, lock=False)


async def block(conn: Executor, account: Account, reason: str) -> None:
    """Keep the account's phone (and email) from logging in or signing up again."""
    identifiers = [("phone", account.phone)]
    if account.email:
        identifiers.append(("email", account.email.lower()))
    await conn.execute(
        """
        INSERT INTO blocked_identifiers (kind, value, reason)
        SELECT kind, value, $3 FROM unnest($1::text[], $2::text[]) AS t (kind, value)
        ON CONFLICT (kind, value) DO NOTHING
        """,
        [k for k, _ in identifiers],
        [v for _, v in identifiers],
        reason,
    )


async def erase(conn: Executor, user_id: int) -> list[UUID]:
    """Overwrite the account's snapshots in bookings and delete the account; returns
    the sessions that were live (their sockets are to be closed)."""
    sessions = await conn.fetch(
        "SELECT id FROM auth_sessions WHERE user_id = $1 AND revoked_at IS NULL", user_id
    )
    # What the other sides were told about their bookings with the account named it.
    await conn.execute(
        r"""
        UPDATE notifications n SET
            title = regexp_replace(n.title, '\m' || u.pattern || '\M', $2, 'g'),
            body = regexp_replace(n.body, '\m' || u.pattern || '\M', $2, 'g')
        FROM (SELECT regexp_replace(full_name, '([.*+?^${}()|\[\]\\])', '\\\1', 'g')
                  AS pattern
              FROM users WHERE id = $1 AND full_name IS NOT NULL) u
        WHERE n.booking_id IN (SELECT id FROM bookings WHERE customer_id = $1 OR provider_id = $1)
          AND n.user_id <> $1
        """,
        user_id,
        DELETED_NAME,
    )
    # As the customer: the name, the words and the address of the booking (only the
    # place's kind, city and state stay: a provider's history of where they worked).
    await conn.execute(
        """
        UPDATE bookings SET
            customer_name = $2,
            description = NULL,
            address = (SELECT coalesce(jsonb_object_agg(key, value), '{}')
                       FROM jsonb_each(address) WHERE key = ANY($3::text[]))
        WHERE customer_id = $1
        """,
        user_id,
        DELETED_NAME,
        list(KEPT_ADDRESS),
    )
    await conn.execute(
        "UPDATE bookings SET provider_name = $2 WHERE provider_id = $1", user_id, DELETED_NAME
    )
    await conn.execute("DELETE FROM users WHERE id = $1", user_id)
    return [r["id"] for r in sessions]


def erased_party(booking: BookingRow, side: str) -> BookingRow:
    """``booking`` as :func:`erase` leaves it once its party on ``side`` is erased (for
    the events that tell the other side, staged before the erasure)."""
    if side == "provider":
        return dataclasses.replace(booking, provider_name=DELETED_NAME)
    address = {k: v for k, v in booking.address.items() if k in KEPT_ADDRESS}
    return dataclasses.replace(
        booking, customer_name=DELETED_NAME, description=None, address=address
    )
