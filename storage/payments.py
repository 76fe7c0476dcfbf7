"""Queries of payments (tables ``payments``, ``paid_periods``, ``labour_access``,
``payment_events``, ``gateway_calls``, ``payment_security_events``; migration 0060).

A payment's row is locked (``FOR UPDATE``) by every change of its status, so concurrent
callbacks, webhooks, verifies and the reconciler, on any instance, change it one after
the other; the period a payment buys is keyed by the payment (one per payment).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from storage.events import Executor

_COLUMNS = (
    "p.id, p.order_id, p.user_id, p.product, p.provider_service_id, p.amount_paise,"
    " p.currency, p.gateway, p.merchant_id, p.status, p.gateway_txn_id, p.bank_txn_id,"
    " p.payment_mode, p.result_code, p.result_message, p.next_check_at, p.checks,"
    " p.refund_id, p.refund_reason, p.created_at, p.updated_at, p.paid_at, p.refunded_at,"
    " pp.starts_at AS period_starts_at, pp.ends_at AS period_ends_at,"
    " pp.ended_at AS period_ended_at"
)
_FROM = "payments p LEFT JOIN paid_periods pp ON pp.payment_id = p.id"


@dataclass(frozen=True, slots=True)
class PaymentRow:
    id: int
    order_id: str
    user_id: int | None
    product: str
    provider_service_id: int | None
    amount_paise: int
    currency: str
    gateway: str
    merchant_id: str
    status: str
    gateway_txn_id: str | None
    bank_txn_id: str | None
    payment_mode: str | None
    result_code: str | None
    result_message: str | None
    next_check_at: datetime | None
    checks: int
    refund_id: str | None
    refund_reason: str | None
    created_at: datetime
    updated_at: datetime
    paid_at: datetime | None
    refunded_at: datetime | None
    period_starts_at: datetime | None
    period_ends_at: datetime | None
    period_ended_at: datetime | None


def _payment(row: Any) -> PaymentRow | None:
    return None if row is None else PaymentRow(*(row[k] for k in PaymentRow.__slots__))


@dataclass(frozen=True, slots=True)
class NewPayment:
    order_id: str
    user_id: int
    product: str
    provider_service_id: int | None
    amount_paise: int
    currency: str
    gateway: str
    merchant_id: str
    next_check_at: datetime


async def create(conn: Executor, payment: NewPayment, now: datetime) -> int:
    """A new order (status created) and its first event, in one statement."""
    payment_id: int = await conn.fetchval(
        """
        WITH created AS (
            INSERT INTO payments (order_id, user_id, product, provider_service_id,
                amount_paise, currency, gateway, merchant_id, status, next_check_at,
                created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'created', $9, $10, $10)
            RETURNING id
        ), logged AS (
            INSERT INTO payment_events (payment_id, from_status, to_status, source, created_at)
            SELECT id, NULL, 'created', 'initiate', $10 FROM created
        )
        SELECT id FROM created
        """,
        payment.order_id,
        payment.user_id,
        payment.product,
        payment.provider_service_id,
        payment.amount_paise,
        payment.currency,
        payment.gateway,
        payment.merchant_id,
        payment.next_check_at,
        now,
    )
    return payment_id


async def recent_initiations(conn: Executor, user_id: int, since: datetime) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM payments WHERE user_id = $1 AND created_at > $2", user_id, since
    )
    return count


async def get(db: Executor, order_id: str) -> PaymentRow | None:
    return _payment(
        await db.fetchrow(f"SELECT {_COLUMNS} FROM {_FROM} WHERE p.order_id = $1", order_id)
    )


async def lock(conn: Executor, order_id: str) -> PaymentRow | None:
    """The payment, its row locked until the transaction ends."""
    return _payment(
        await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM {_FROM} WHERE p.order_id = $1 FOR UPDATE OF p", order_id
        )
    )


async def change(
    conn: Executor,
    payment_id: int,
    *,
    before: str,
    after: str,
    source: str,
    now: datetime,
    detail: dict[str, Any] | None = None,
    **columns: Any,
) -> None:
    """Set the status (and ``columns``) and log the change, in one statement."""
    sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(columns, start=6))
    await conn.execute(
        f"""
        WITH changed AS (
            UPDATE payments SET status = $2, updated_at = $3{", " + sets if sets else ""}
            WHERE id = $1 RETURNING id
        )
        INSERT INTO payment_events (payment_id, from_status, to_status, source, detail, created_at)
        SELECT id, $4, $2, $5, ${len(columns) + 6}::jsonb, $3 FROM changed
        """,
        payment_id,
        after,
        now,
        before,
        source,
        *columns.values(),
        orjson.dumps(detail or {}).decode(),
    )


async def checked(conn: Executor, payment_id: int, *, next_check_at: datetime | None) -> None:
    """The reconciler asked about it: when to ask next (None: never)."""
    await conn.execute(
        "UPDATE payments SET checks = checks + 1, next_check_at = $2 WHERE id = $1",
        payment_id,
        next_check_at,
    )


async def due(db: Executor, now: datetime, limit: int) -> list[PaymentRow]:
    """Orders not final whose next status check is due, oldest due first."""
    rows = await db.fetch(
        f"""
        SELECT {_COLUMNS} FROM {_FROM}
        WHERE p.status IN ('created', 'pending', 'refund_pending') AND p.next_check_at <= $1
        ORDER BY p.next_check_at LIMIT $2
        """,
        now,
        limit,
    )
    return [r for r in map(_payment, rows) if r is not None]


# --- Periods ----------------------------------------------------------------------------


async def add_period(
    conn: Executor,
    payment: PaymentRow,
    starts_at: datetime,
    ends_at: datetime | None,
) -> bool:
    """The period a payment bought; False if it has one already (fulfilled before)."""
    status: str = await conn.execute(
        """
        INSERT INTO paid_periods (payment_id, product, user_id, provider_service_id,
                                  starts_at, ends_at)
        VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (payment_id) DO NOTHING
        """,
        payment.id,
        payment.product,
        payment.user_id,
        payment.provider_service_id,
        starts_at,
        ends_at,
    )
    return status.endswith(" 1")


async def end_period(conn: Executor, payment_id: int, now: datetime) -> None:
    """A refund ends what the payment bought, now."""
    await conn.execute(
        "UPDATE paid_periods SET ended_at = $2 WHERE payment_id = $1 AND ended_at IS NULL",
        payment_id,
        now,
    )


async def listing_end(conn: Executor, provider_service_id: int, now: datetime) -> datetime | None:
    """The end of the latest period still bought for a listing (refunds excluded)."""
    end: datetime | None = await conn.fetchval(
        """
        SELECT max(coalesce(ended_at, ends_at)) FROM paid_periods
        WHERE provider_service_id = $1 AND coalesce(ended_at, ends_at) > $2
        """,
        provider_service_id,
        now,
    )
    return end


@dataclass(frozen=True, slots=True)
class Listing:
    """A registration as a listing fee sees it."""

    id: int
    provider_id: int
    status: str
    active_until: datetime | None
    service_name: str
    is_paid: bool
    price_paise: int
    currency: str
    billing_cycle: str
    billing_interval: int


async def lock_listing(conn: Executor, provider_service_id: int) -> Listing | None:
    """A registration and its service's price, the registration row locked."""
    row = await conn.fetchrow(
        """
        SELECT ps.id, ps.provider_id, ps.status, ps.active_until, s.name AS service_name,
               s.is_paid, s.price_paise, s.currency, s.billing_cycle, s.billing_interval
        FROM provider_services ps JOIN services s ON s.id = ps.service_id
        WHERE ps.id = $1
        FOR UPDATE OF ps
        """,
        provider_service_id,
    )
    return None if row is None else Listing(**dict(row))


async def set_listing(
    conn: Executor,
    provider_service_id: int,
    status: str,
    active_until: datetime | None,
    now: datetime,
) -> None:
    await conn.execute(
        "UPDATE provider_services SET status = $2, active_until = $3, updated_at = $4"
        " WHERE id = $1",
        provider_service_id,
        status,
        active_until,
        now,
    )


async def lock_labour_access(conn: Executor, user_id: int) -> datetime | None:
    """Until when the customer has labour access (the row locked), None if never."""
    until: datetime | None = await conn.fetchval(
        "SELECT active_until FROM labour_access WHERE user_id = $1 FOR UPDATE", user_id
    )
    return until


async def labour_access_until(db: Executor, user_id: int) -> datetime | None:
    until: datetime | None = await db.fetchval(
        "SELECT active_until FROM labour_access WHERE user_id = $1", user_id
    )
    return until


async def set_labour_access(
    conn: Executor, user_id: int, active_until: datetime, now: datetime
) -> None:
    await conn.execute(
        """
        INSERT INTO labour_access (user_id, active_until, updated_at) VALUES ($1, $2, $3)
        ON CONFLICT (user_id) DO UPDATE SET active_until = $2, updated_at = $3
        """,
        user_id,
        active_until,
        now,
    )


async def labour_end(conn: Executor, user_id: int, now: datetime) -> datetime | None:
    end: datetime | None = await conn.fetchval(
        """
        SELECT max(coalesce(ended_at, ends_at)) FROM paid_periods
        WHERE user_id = $1 AND product = 'labour_access' AND coalesce(ended_at, ends_at) > $2
        """,
        user_id,
        now,
    )
    return end


# --- Lists --------------------------------------------------------------------------------


async def page(
    db: Executor,
    *,
    user_id: int | None,
    status: str | None,
    before_id: int | None,
    limit: int,
) -> list[PaymentRow]:
    """Payments newest first: one payer's (``user_id``) or everyone's."""
    rows = await db.fetch(
        f"""
        SELECT {_COLUMNS} FROM {_FROM}
        WHERE ($1::bigint IS NULL OR p.user_id = $1)
          AND ($2::text IS NULL OR p.status = $2)
          AND p.id < $3
        ORDER BY p.id DESC LIMIT $4
        """,
        user_id,
        status,
        before_id or 2**63 - 1,
        limit,
    )
    return [r for r in map(_payment, rows) if r is not None]


@dataclass(frozen=True, slots=True)
class EventRow:
    from_status: str | None
    to_status: str
    source: str
    detail: dict[str, Any]
    created_at: datetime


async def events_of(db: Executor, payment_id: int) -> list[EventRow]:
    rows = await db.fetch(
        "SELECT from_status, to_status, source, detail::text AS detail, created_at"
        " FROM payment_events WHERE payment_id = $1 ORDER BY id",
        payment_id,
    )
    return [
        EventRow(
            r["from_status"],
            r["to_status"],
            r["source"],
            orjson.loads(r["detail"]),
            r["created_at"],
        )
        for r in rows
    ]


# --- The audit ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GatewayCallRow:
    order_id: str
    endpoint: str
    http_status: int | None
    latency_ms: float
    request: dict[str, Any]
    response: dict[str, Any] | None
    error: str | None
    created_at: datetime


async def log_calls(db: Executor, calls: list[GatewayCallRow]) -> None:
    """Write gateway calls to the audit, in one statement."""
    if not calls:
        return
    await db.execute(
        """
        INSERT INTO gateway_calls (order_id, endpoint, http_status, latency_ms, request,
                                   response, error, created_at)
        SELECT o, e, s, l, q::jsonb, a::jsonb, x, t
        FROM unnest($1::text[], $2::text[], $3::int[], $4::float8[], $5::text[], $6::text[],
                    $7::text[], $8::timestamptz[]) AS c (o, e, s, l, q, a, x, t)
        """,
        [c.order_id for c in calls],
        [c.endpoint for c in calls],
        [c.http_status for c in calls],
        [c.latency_ms for c in calls],
        [orjson.dumps(c.request).decode() for c in calls],
        [None if c.response is None else orjson.dumps(c.response).decode() for c in calls],
        [c.error for c in calls],
        [c.created_at for c in calls],
    )


async def calls_of(db: Executor, order_id: str) -> list[GatewayCallRow]:
    rows = await db.fetch(
        "SELECT order_id, endpoint, http_status, latency_ms, request::text AS request,"
        " response::text AS response, error, created_at FROM gateway_calls"
        " WHERE order_id = $1 ORDER BY id",
        order_id,
    )
    return [
        GatewayCallRow(
            r["order_id"],
            r["endpoint"],
            r["http_status"],
            r["latency_ms"],
            orjson.loads(r["request"]),
            None if r["response"] is None else orjson.loads(r["response"]),
            r["error"],
            r["created_at"],
        )
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class SecurityEventRow:
    kind: str
    order_id: str | None
    source_ip: str | None
    detail: dict[str, Any]
    created_at: datetime


async def security_event(
    db: Executor,
    kind: str,
    *,
    order_id: str | None,
    payment_id: int | None,
    source_ip: str | None,
    detail: dict[str, Any],
    now: datetime,
) -> None:
    await db.execute(
        """
        INSERT INTO payment_security_events (kind, order_id, payment_id, source_ip, detail,
                                             created_at)
        VALUES ($1, $2, $3, $4, $5::jsonb, $6)
        """,
        kind,
        order_id,
        payment_id,
        source_ip,
        orjson.dumps(detail).decode(),
        now,
    )


async def security_events(db: Executor, order_id: str) -> list[SecurityEventRow]:
    rows = await db.fetch(
        "SELECT kind, order_id, source_ip, detail::text AS detail, created_at"
        " FROM payment_security_events WHERE order_id = $1 ORDER BY id",
        order_id,
    )
    return [
        SecurityEventRow(
            r["kind"], r["order_id"], r["source_ip"], orjson.loads(r["detail"]), r["created_at"]
        )
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class ExpiredListing:
    id: int
    provider_id: int
    service_name: str
    price_paise: int
    ended_at: datetime


async def expire_listings(conn: Executor, now: datetime, limit: int) -> list[ExpiredListing]:
    """Mark expired the active listings whose period ended, a batch at a time (rows
    another instance is expiring are skipped, never waited for)."""
    rows = await conn.fetch(
        """
        WITH due AS (
            SELECT id FROM provider_services
            WHERE status = 'active' AND active_until <= $1
            ORDER BY active_until LIMIT $2
            FOR UPDATE SKIP LOCKED
        )
        UPDATE provider_services ps SET status = 'expired', updated_at = $1
        FROM due, services s
        WHERE ps.id = due.id AND s.id = ps.service_id
        RETURNING ps.id, ps.provider_id, s.name AS service_name, s.price_paise,
                  ps.active_until AS ended_at
        """,
        now,
        limit,
    )
    return [ExpiredListing(**dict(r)) for r in rows]
