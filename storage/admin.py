"""Queries of the admin console: accounts and providers listed in keyset pages, the
verified flag, removing an account (blocking its phone and email), the counts of
``admin.stats`` and the booking counts of listed accounts. Also :func:`phone_blocked`,
which login checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from storage.events import Executor


@dataclass(frozen=True, slots=True)
class UserListRow:
    id: int
    phone: str
    role: str
    full_name: str | None
    email: str | None
    is_verified: bool
    is_active: bool
    created_at: datetime
    last_login_at: datetime | None


@dataclass(frozen=True, slots=True)
class ProviderListRow:
    user: UserListRow
    registrations: dict[str, int]  # status → count (removed ones left out)


_USER_COLUMNS = (
    "u.id, u.phone, u.role, u.full_name, u.email, u.is_verified, u.is_active,"
    " u.created_at, u.last_login_at"
)


def _like(search: str) -> str:
    escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def list_users(
    db: Executor,
    *,
    role: str | None,
    verified: bool | None,
    search: str | None,
    after_id: int | None,
    limit: int,
) -> list[UserListRow]:
    """Accounts by id (oldest first) after ``after_id``; ``search`` matches a part of
    the phone, name or email, whatever its case."""
    rows = await db.fetch(
        f"""
        SELECT {_USER_COLUMNS} FROM users u
        WHERE ($1::text IS NULL OR u.role = $1)
          AND ($2::boolean IS NULL OR u.is_verified = $2)
          AND ($3::text IS NULL OR u.phone ILIKE $3 OR u.full_name ILIKE $3
               OR u.email ILIKE $3)
          AND u.id > $4
        ORDER BY u.id LIMIT $5
        """,
        role,
        verified,
        None if search is None else _like(search),
        after_id or 0,
        limit,
    )
    return [UserListRow(*(r[k] for k in UserListRow.__slots__)) for r in rows]


async def booking_counts(db: Executor, user_ids: list[int]) -> dict[int, dict[str, int]]:
    """user id → their bookings (as customer or as provider) by status, in one query
    (the (customer_id, status, id) and (provider_id, status, id) indexes)."""
    rows = await db.fetch(
        """
        SELECT user_id, status, count(*) AS n FROM (
            SELECT customer_id AS user_id, status FROM bookings
            WHERE customer_id = ANY($1::bigint[])
            UNION ALL
            SELECT provider_id, status FROM bookings WHERE provider_id = ANY($1::bigint[])
        ) mine
        GROUP BY user_id, status
        """,
        user_ids,
    )
    counts: dict[int, dict[str, int]] = {}
    for r in rows:
        counts.setdefault(r["user_id"], {})[r["status"]] = r["n"]
    return counts


@dataclass(frozen=True, slots=True)
class ListingRow:
    id: int
    service_slug: str
    status: str
    active_until: datetime | None


async def listings_of(db: Executor, provider_ids: list[int]) -> dict[int, list[ListingRow]]:
    """provider id → their registrations (removed ones left out), oldest first."""
    rows = await db.fetch(
        """
        SELECT ps.provider_id, ps.id, s.slug, ps.status, ps.active_until
        FROM provider_services ps JOIN services s ON s.id = ps.service_id
        WHERE ps.provider_id = ANY($1::bigint[]) AND ps.status <> 'removed'
        ORDER BY ps.provider_id, ps.id
        """,
        provider_ids,
    )
    listings: dict[int, list[ListingRow]] = {}
    for r in rows:
        listings.setdefault(r["provider_id"], []).append(
            ListingRow(r["id"], r["slug"], r["status"], r["active_until"])
        )
    return listings


async def set_verified(db: Executor, user_id: int, verified: bool) -> UserListRow | None:
    row = await db.fetchrow(
        f"""
        UPDATE users u SET is_verified = $2, unverified_by_admin = NOT $2, updated_at = now()
        WHERE u.id = $1
        RETURNING {_USER_COLUMNS}
        """,
        user_id,
        verified,
    )
    return None if row is None else UserListRow(*(row[k] for k in UserListRow.__slots__))


async def phone_blocked(db: Executor, phone: str) -> bool:
    blocked = await db.fetchval(
        "SELECT true FROM blocked_identifiers WHERE kind = 'phone' AND value = $1", phone
    )
    return bool(blocked)


async def email_blocked(db: Executor, email: str) -> bool:
    blocked = await db.fetchval(
        "SELECT true FROM blocked_identifiers WHERE kind = 'email' AND value = lower($1)", email
    )
    return bool(blocked)


@dataclass(frozen=True, slots=True)
class JoinedDay:
    day: date  # in the time zone asked for
    users: int  # every account created that day, of any role
    customers: int
    providers: int


@dataclass(frozen=True, slots=True)
class StatsRow:
    users_by_role: dict[str, int]
    verified_users: int
    registrations_by_status: dict[str, int]
    active_services: int
    revenue_paise: int  # paid and not refunded
    payments_by_status: dict[str, int]
    bookings_by_status: dict[str, int]
    open_reports: int
    joined: list[JoinedDay]  # oldest first, one per day, days with none included
    activity: list[ActivityDay]  # the same days: bookings, calls, revenue


@dataclass(frozen=True, slots=True)
class ActivityDay:
    day: date  # in the time zone asked for
    bookings: int  # bookings made that day
    calls: int  # calls started that day (answered or not)
    revenue_paise: int  # payments received that day, not refunded


# Accounts created on each of the ``$3`` days up to the day of ``$1`` in zone ``$2``:
# a range of created_at (users_created_idx), then every day of the series, zero or not.
_JOINED = """
WITH bounds AS (
    SELECT ($1::timestamptz AT TIME ZONE $2::text)::date - ($3::int - 1) AS first_day,
           ($1::timestamptz AT TIME ZONE $2::text)::date AS last_day
), joined AS (
    SELECT (u.created_at AT TIME ZONE $2::text)::date AS day, u.role, count(*) AS n
    FROM users u, bounds b
    WHERE u.created_at >= (b.first_day::timestamp AT TIME ZONE $2::text)
      AND u.created_at < ((b.last_day + 1)::timestamp AT TIME ZONE $2::text)
    GROUP BY 1, 2
)
SELECT d::date AS day,
       coalesce(sum(j.n), 0)::bigint AS users,
       coalesce(sum(j.n) FILTER (WHERE j.role = 'customer'), 0)::bigint AS customers,
       coalesce(sum(j.n) FILTER (WHERE j.role = 'provider'), 0)::bigint AS providers
FROM bounds b
CROSS JOIN generate_series(b.first_day, b.last_day, interval '1 day') AS d
LEFT JOIN joined j ON j.day = d::date
GROUP BY d ORDER BY d
"""


# One figure per day over the same days as _JOINED: ``{value}`` of the rows of
# ``{table}`` whose ``{column}`` falls on that day (a range of it) and ``{where}``.
_PER_DAY = """
WITH bounds AS (
    SELECT ($1::timestamptz AT TIME ZONE $2::text)::date - ($3::int - 1) AS first_day,
           ($1::timestamptz AT TIME ZONE $2::text)::date AS last_day
), counted AS (
    SELECT (t.{column} AT TIME ZONE $2::text)::date AS day, {value} AS n
    FROM {table} t, bounds b
    WHERE t.{column} >= (b.first_day::timestamp AT TIME ZONE $2::text)
      AND t.{column} < ((b.last_day + 1)::timestamp AT TIME ZONE $2::text)
      AND {where}
    GROUP BY 1
)
SELECT coalesce(c.n, 0)::bigint AS n
FROM bounds b
CROSS JOIN generate_series(b.first_day, b.last_day, interval '1 day') AS d
LEFT JOIN counted c ON c.day = d::date
ORDER BY d
"""
_BOOKINGS_PER_DAY = _PER_DAY.format(
    table="bookings", column="created_at", value="count(*)", where="true"
)
_CALLS_PER_DAY = _PER_DAY.format(
    table="call_sessions", column="created_at", value="count(*)", where="true"
)
# Received: as revenuePaise counts it (paid, or a refund not settled yet).
_REVENUE_PER_DAY = _PER_DAY.format(
    table="payments",
    column="paid_at",
    value="sum(t.amount_paise)",
    where="t.status IN ('paid', 'refund_pending')",
)


async def stats(db: Executor, *, now: datetime, timezone: str, days: int) -> StatsRow:
    """The counts of ``admin.stats``; accounts joined, bookings made, calls started and
    revenue received on each of the last ``days`` days (up to today) of the calendar of
    ``timezone`` (one query per series)."""
    roles = await db.fetch("SELECT role, count(*) AS n FROM users WHERE is_active GROUP BY role")
    verified = await db.fetchval("SELECT count(*) FROM users WHERE is_active AND is_verified")
    statuses = await db.fetch("SELECT status, count(*) AS n FROM provider_services GROUP BY status")
    services = await db.fetchval("SELECT count(*) FROM services WHERE is_active")
    payments = await db.fetch(
        "SELECT status, count(*) AS n, sum(amount_paise) AS paise FROM payments GROUP BY status"
    )
    revenue = sum(r["paise"] for r in payments if r["status"] in ("paid", "refund_pending"))
    bookings = await db.fetch("SELECT status, count(*) AS n FROM bookings GROUP BY status")
    open_reports = await db.fetchval("SELECT count(*) FROM reports WHERE status = 'open'")
    joined = await db.fetch(_JOINED, now, timezone, days)
    per_day = [
        [r["n"] for r in await db.fetch(query, now, timezone, days)]
        for query in (_BOOKINGS_PER_DAY, _CALLS_PER_DAY, _REVENUE_PER_DAY)
    ]
    return StatsRow(
        users_by_role={r["role"]: r["n"] for r in roles},
        verified_users=verified,
        registrations_by_status={r["status"]: r["n"] for r in statuses},
        active_services=services,
        revenue_paise=revenue,
        payments_by_status={r["status"]: r["n"] for r in payments},
        bookings_by_status={r["status"]: r["n"] for r in bookings},
        open_reports=open_reports,
        joined=[JoinedDay(r["day"], r["users"], r["customers"], r["providers"]) for r in joined],
        activity=[
            ActivityDay(r["day"], *counts) for r, *counts in zip(joined, *per_day, strict=True)
        ],
    )


async def audience(db: Executor, roles: list[str], after_id: int, limit: int) -> list[int]:
    """Active accounts of ``roles`` by id after ``after_id`` (a page of an announcement's
    audience; the primary key makes each page an index range)."""
    rows = await db.fetch(
        "SELECT id FROM users WHERE id > $1 AND role = ANY($2::text[]) AND is_active"
        " ORDER BY id LIMIT $3",
        after_id,
        roles,
        limit,
    )
    return [r["id"] for r in rows]


async def role_of(db: Executor, user_id: int) -> str | None:
    role: str | None = await db.fetchval("SELECT role FROM users WHERE id = $1", user_id)
    return role


async def record_action(
    db: Executor,
    *,
    admin_id: int | None,
    method: str,
    params: str,
    ip: str | None,
    outcome: str,
    now: datetime,
) -> None:
    await db.execute(
        "INSERT INTO admin_actions (admin_id, method, params, ip, outcome, created_at)"
        " VALUES ($1, $2, $3::jsonb, $4, $5, $6)",
        admin_id,
        method,
        params,
        ip,
        outcome,
        now,
    )


@dataclass(frozen=True, slots=True)
class ActionRow:
    id: int
    admin_id: int | None
    admin_name: str | None
    method: str
    params: str
    ip: str | None
    outcome: str
    created_at: datetime


async def actions(
    db: Executor, *, admin_id: int | None, before_id: int | None, limit: int
) -> list[ActionRow]:
    """Admin actions, newest first (of one admin or all)."""
    rows = await db.fetch(
        """
        SELECT a.id, a.admin_id, u.full_name AS admin_name, a.method, a.params::text AS params,
               a.ip, a.outcome, a.created_at
        FROM admin_actions a LEFT JOIN users u ON u.id = a.admin_id
        WHERE ($1::bigint IS NULL OR a.admin_id = $1) AND a.id < $2
        ORDER BY a.id DESC LIMIT $3
        """,
        admin_id,
        before_id or 2**63 - 1,
        limit,
    )
    return [ActionRow(**dict(r)) for r in rows]
