"""Queries of the admin console: accounts and providers listed in keyset pages, the
verified flag, removing an account (blocking its phone and email) and the counts of
``admin.stats``. Also :func:`phone_blocked`, which login checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

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


@dataclass(frozen=True, slots=True)
class Removal:
    found: bool
    revoked: list[UUID]
    already_removed: bool


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


async def remove_user(conn: Executor, user_id: int, reason: str) -> Removal:
    """In the caller's transaction: block the account's phone and email, deactivate it
    and its listings, revoke its sessions. Repeating it changes nothing more."""
    row = await conn.fetchrow(
        "SELECT phone, email, is_active FROM users WHERE id = $1 FOR UPDATE", user_id
    )
    if row is None:
        return Removal(found=False, revoked=[], already_removed=False)
    identifiers = [("phone", row["phone"])]
    if row["email"]:
        identifiers.append(("email", row["email"].lower()))
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
    await conn.execute(
        "UPDATE users SET is_active = false, updated_at = now() WHERE id = $1 AND is_active",
        user_id,
    )
    await conn.execute(
        """
        UPDATE provider_services SET status = 'removed', updated_at = now()
        WHERE provider_id = $1 AND status <> 'removed'
        """,
        user_id,
    )
    revoked = await conn.fetch(
        """
        UPDATE auth_sessions SET revoked_at = now(), revoke_reason = 'removed'
        WHERE user_id = $1 AND revoked_at IS NULL RETURNING id
        """,
        user_id,
    )
    return Removal(
        found=True, revoked=[r["id"] for r in revoked], already_removed=not row["is_active"]
    )


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
class StatsRow:
    users_by_role: dict[str, int]
    verified_users: int
    registrations_by_status: dict[str, int]
    active_services: int
    revenue_paise: int  # paid and not refunded
    payments_by_status: dict[str, int]


async def stats(db: Executor) -> StatsRow:
    roles = await db.fetch("SELECT role, count(*) AS n FROM users WHERE is_active GROUP BY role")
    verified = await db.fetchval("SELECT count(*) FROM users WHERE is_active AND is_verified")
    statuses = await db.fetch("SELECT status, count(*) AS n FROM provider_services GROUP BY status")
    services = await db.fetchval("SELECT count(*) FROM services WHERE is_active")
    payments = await db.fetch(
        "SELECT status, count(*) AS n, sum(amount_paise) AS paise FROM payments GROUP BY status"
    )
    revenue = sum(r["paise"] for r in payments if r["status"] in ("paid", "refund_pending"))
    return StatsRow(
        users_by_role={r["role"]: r["n"] for r in roles},
        verified_users=verified,
        registrations_by_status={r["status"]: r["n"] for r in statuses},
        active_services=services,
        revenue_paise=revenue,
        payments_by_status={r["status"]: r["n"] for r in payments},
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
