"""Queries of calls: who may call about a booking, call sessions and their event trail.

A call's row is its state for every instance: transitions lock it (``FOR UPDATE``),
starts lock both users (advisory locks, so busy checks cannot race), and every
instance's sweep ends calls whose ringing deadline or reconnect grace passed. No
phone number is ever read here: the masked identity is a name and a role.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from storage.erasure import DELETED_NAME
from storage.events import Executor

ACTIVE_SQL = "state <> 'ended'"


@dataclass(frozen=True, slots=True)
class BookingParties:
    """A booking seen by someone who wants to call about it."""

    id: int
    status: str
    customer_id: int | None
    provider_id: int | None
    registration_active: bool
    customer_name: str | None
    customer_ok: bool  # active account
    customer_verified: bool
    provider_name: str | None
    provider_ok: bool
    provider_verified: bool
    requires_labour_access: bool  # a labour listing
    customer_labour_access: bool  # the customer has labour access now


async def booking_parties(conn: Executor, booking_id: int, now: datetime) -> BookingParties | None:
    row = await conn.fetchrow(
        """
        SELECT b.id, b.status, b.customer_id, b.provider_id,
               coalesce(ps.status = 'active'
                        AND (ps.active_until IS NULL OR ps.active_until > $2), false)
                   AS registration_active,
               c.full_name AS customer_name, coalesce(c.is_active, false) AS customer_ok,
               coalesce(c.is_verified, false) AS customer_verified,
               p.full_name AS provider_name, coalesce(p.is_active, false) AS provider_ok,
               coalesce(p.is_verified, false) AS provider_verified,
               coalesce(s.requires_labour_access, false) AS requires_labour_access,
               coalesce(la.active_until > $2, false) AS customer_labour_access
        FROM bookings b
        LEFT JOIN provider_services ps ON ps.id = b.provider_service_id
        LEFT JOIN services s ON s.id = ps.service_id
        LEFT JOIN labour_access la ON la.user_id = b.customer_id
        LEFT JOIN users c ON c.id = b.customer_id
        LEFT JOIN users p ON p.id = b.provider_id
        WHERE b.id = $1
        """,
        booking_id,
        now,
    )
    return None if row is None else BookingParties(**dict(row))


async def lock_users(conn: Executor, user_ids: list[int]) -> None:
    """Serialize call starts that involve any of these users (in id order: no deadlock)."""
    for user_id in sorted(set(user_ids)):
        await conn.execute(
            "SELECT pg_advisory_xact_lock("
            "hashtextextended('rtc-call-user:' || $1::bigint::text, 0))",
            user_id,
        )


async def lock_instance(conn: Executor, instance_id: str) -> None:
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('rtc-call-instance:' || $1, 0))",
        instance_id,
    )


async def users_in_calls(conn: Executor, user_ids: list[int]) -> set[int]:
    """Those of ``user_ids`` who are a party to a call in progress."""
    rows = await conn.fetch(
        f"""
        SELECT caller_id AS u FROM call_sessions WHERE {ACTIVE_SQL} AND caller_id = ANY($1)
        UNION
        SELECT callee_id FROM call_sessions WHERE {ACTIVE_SQL} AND callee_id = ANY($1)
        """,
        user_ids,
    )
    return {r["u"] for r in rows}


async def active_call_of(conn: Executor, user_id: int) -> int | None:
    """The id of a call in progress of ``user_id`` (either party), if any."""
    value = await conn.fetchval(
        f"""
        SELECT max(id) FROM (
            SELECT id FROM call_sessions WHERE {ACTIVE_SQL} AND caller_id = $1
            UNION ALL
            SELECT id FROM call_sessions WHERE {ACTIVE_SQL} AND callee_id = $1
        ) mine
        """,
        user_id,
    )
    return None if value is None else int(value)


async def recent_starts(
    conn: Executor, caller_id: int, since: datetime
) -> tuple[int, datetime | None]:
    """How many calls the caller started since ``since``, and the oldest of them."""
    row = await conn.fetchrow(
        "SELECT count(*) AS n, min(created_at) AS oldest FROM call_sessions"
        " WHERE caller_id = $1 AND created_at > $2",
        caller_id,
        since,
    )
    return int(row["n"]), row["oldest"]


async def active_on_instance(conn: Executor, instance_id: str) -> int:
    return int(
        await conn.fetchval(
            f"SELECT count(*) FROM call_sessions WHERE instance_id = $1 AND {ACTIVE_SQL}",
            instance_id,
        )
    )


@dataclass(frozen=True, slots=True)
class CallRow:
    id: int
    booking_id: int | None
    caller_id: int | None
    callee_id: int | None
    caller_side: str
    media: str
    policy: str
    state: str
    end_reason: str | None
    ended_by: str | None
    caller_device: str
    callee_device: str | None
    instance_id: str
    ring_deadline: datetime
    caller_lost_at: datetime | None
    callee_lost_at: datetime | None
    created_at: datetime
    accepted_at: datetime | None
    connected_at: datetime | None
    ended_at: datetime | None
    caller_name: str | None
    callee_name: str | None


_COLUMNS = f"""c.id, c.booking_id, c.caller_id, c.callee_id, c.caller_side, c.media, c.policy,
    c.state, c.end_reason, c.ended_by, c.caller_device, c.callee_device, c.instance_id,
    c.ring_deadline, c.caller_lost_at, c.callee_lost_at, c.created_at, c.accepted_at,
    c.connected_at, c.ended_at,
    CASE WHEN c.caller_id IS NULL THEN '{DELETED_NAME}'
         ELSE (SELECT full_name FROM users WHERE id = c.caller_id) END AS caller_name,
    CASE WHEN c.callee_id IS NULL THEN '{DELETED_NAME}'
         ELSE (SELECT full_name FROM users WHERE id = c.callee_id) END AS callee_name"""


def _call(row: Any) -> CallRow:
    return CallRow(**dict(row))


async def insert_call(
    conn: Executor,
    *,
    booking_id: int,
    caller_id: int,
    callee_id: int,
    caller_side: str,
    media: str,
    policy: str,
    caller_device: str,
    instance_id: str,
    ring_deadline: datetime,
    now: datetime,
) -> CallRow:
    row = await conn.fetchrow(
        f"""
        WITH c AS (
            INSERT INTO call_sessions (booking_id, caller_id, callee_id, caller_side, media,
                policy, caller_device, instance_id, ring_deadline, created_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
            RETURNING *
        )
        SELECT {_COLUMNS} FROM c
        """,
        booking_id,
        caller_id,
        callee_id,
        caller_side,
        media,
        policy,
        caller_device,
        instance_id,
        ring_deadline,
        now,
    )
    return _call(row)


async def get_call(conn: Executor, call_id: int, *, lock: bool = False) -> CallRow | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM call_sessions c WHERE c.id = $1"
        + (" FOR UPDATE OF c" if lock else ""),
        call_id,
    )
    return None if row is None else _call(row)


@dataclass(frozen=True, slots=True)
class SignalRoute:
    """What relaying one signal needs: who is in the call, on which devices."""

    id: int
    caller_id: int | None
    callee_id: int | None
    state: str
    policy: str
    caller_device: str
    callee_device: str | None
    media: str
    instance_id: str  # where a recorded call's media is


async def signal_route(conn: Executor, call_id: int) -> SignalRoute | None:
    row = await conn.fetchrow(
        "SELECT id, caller_id, callee_id, state, policy, caller_device, callee_device,"
        " media, instance_id FROM call_sessions WHERE id = $1",
        call_id,
    )
    return None if row is None else SignalRoute(*row)


async def update_call(conn: Executor, call_id: int, **columns: Any) -> CallRow:
    """Set ``columns`` (names of call_sessions columns, from code only) on the call."""
    names = list(columns)
    assignments = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(names))
    row = await conn.fetchrow(
        f"""
        WITH c AS (UPDATE call_sessions SET {assignments} WHERE id = $1 RETURNING *)
        SELECT {_COLUMNS} FROM c
        """,
        call_id,
        *columns.values(),
    )
    return _call(row)


@dataclass(frozen=True, slots=True)
class CallEventRow:
    id: int
    call_id: int
    event: str
    actor: str
    data: dict[str, Any]
    created_at: datetime


async def insert_event(
    conn: Executor, call_id: int, event: str, actor: str, data: dict[str, Any], now: datetime
) -> CallEventRow:
    row = await conn.fetchrow(
        "INSERT INTO call_events (call_id, event, actor, data, created_at)"
        " VALUES ($1, $2, $3, $4::jsonb, $5) RETURNING id",
        call_id,
        event,
        actor,
        orjson.dumps(data).decode(),
        now,
    )
    return CallEventRow(row["id"], call_id, event, actor, data, now)


def _event(row: Any) -> CallEventRow:
    return CallEventRow(
        row["id"],
        row["call_id"],
        row["event"],
        row["actor"],
        orjson.loads(row["data"]),
        row["created_at"],
    )


async def events_of(conn: Executor, call_id: int) -> list[CallEventRow]:
    rows = await conn.fetch(
        "SELECT id, call_id, event, actor, data::text AS data, created_at FROM call_events"
        " WHERE call_id = $1 ORDER BY id",
        call_id,
    )
    return [_event(r) for r in rows]


async def event_by(conn: Executor, call_id: int, event: str, actor: str) -> CallEventRow | None:
    """The first ``event`` entry of ``actor`` in the call's trail (calls.report: once per
    party), if any."""
    row = await conn.fetchrow(
        "SELECT id, call_id, event, actor, data::text AS data, created_at FROM call_events"
        " WHERE call_id = $1 AND event = $2 AND actor = $3 ORDER BY id LIMIT 1",
        call_id,
        event,
        actor,
    )
    return None if row is None else _event(row)


async def events_since(conn: Executor, since: datetime, limit: int) -> list[CallEventRow]:
    """The platform's call events since ``since``, oldest first (the newest ``limit``)."""
    rows = await conn.fetch(
        """
        SELECT * FROM (
            SELECT id, call_id, event, actor, data::text AS data, created_at FROM call_events
            WHERE created_at >= $1 ORDER BY created_at DESC, id DESC LIMIT $2
        ) recent ORDER BY created_at, id
        """,
        since,
        limit,
    )
    return [_event(r) for r in rows]


async def history(
    conn: Executor,
    *,
    user_id: int | None,
    booking_id: int | None,
    before_id: int | None,
    limit: int,
) -> list[CallRow]:
    """Calls newest first: of ``user_id`` (either party; None: everyone's), of one
    booking or all, with ids below ``before_id``."""
    where = ["($2::bigint IS NULL OR c.booking_id = $2)", "($3::bigint IS NULL OR c.id < $3)"]
    if user_id is None:
        sql = f"""SELECT {_COLUMNS} FROM call_sessions c
                  WHERE $1::bigint IS NULL AND {" AND ".join(where)}
                  ORDER BY c.id DESC LIMIT $4"""
    else:
        # Each side on its own index, then merged: no OR across two columns.
        sql = f"""
            SELECT {_COLUMNS} FROM call_sessions c WHERE c.id IN (
                (SELECT id FROM call_sessions c WHERE c.caller_id = $1 AND {" AND ".join(where)}
                 ORDER BY id DESC LIMIT $4)
                UNION ALL
                (SELECT id FROM call_sessions c WHERE c.callee_id = $1 AND {" AND ".join(where)}
                 ORDER BY id DESC LIMIT $4)
            ) ORDER BY c.id DESC LIMIT $4"""
    rows = await conn.fetch(sql, user_id, booking_id, before_id, limit)
    return [_call(r) for r in rows]


async def active_calls(conn: Executor, limit: int) -> list[CallRow]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM call_sessions c WHERE {ACTIVE_SQL} ORDER BY c.id LIMIT $1",
        limit,
    )
    return [_call(r) for r in rows]


async def due(
    conn: Executor, now: datetime, grace_seconds: float, limit: int
) -> list[tuple[int, str]]:
    """Calls to end now: (id, "time_out") past their ringing deadline, (id, "disconnect")
    whose party's socket stayed away past the grace."""
    rows = await conn.fetch(
        f"""
        (SELECT id, 'time_out' AS action FROM call_sessions
         WHERE state = 'ringing' AND ring_deadline <= $1 ORDER BY ring_deadline LIMIT $3)
        UNION ALL
        (SELECT id, 'disconnect' FROM call_sessions
         WHERE {ACTIVE_SQL} AND (caller_lost_at IS NOT NULL OR callee_lost_at IS NOT NULL)
           AND least(caller_lost_at, callee_lost_at) <= $1 - make_interval(secs => $2)
         LIMIT $3)
        """,
        now,
        grace_seconds,
        limit,
    )
    return [(r["id"], r["action"]) for r in rows]


async def parties_present(conn: Executor, limit: int) -> list[tuple[int, str, int]]:
    """Parties of calls in progress whose socket is not known to be gone:
    (call id, "caller" | "callee", user id). A ringing callee has no socket in the call."""
    rows = await conn.fetch(
        f"""
        (SELECT id, 'caller' AS party, caller_id AS user_id FROM call_sessions
         WHERE {ACTIVE_SQL} AND caller_lost_at IS NULL AND caller_id IS NOT NULL LIMIT $1)
        UNION ALL
        (SELECT id, 'callee', callee_id FROM call_sessions
         WHERE {ACTIVE_SQL} AND callee_lost_at IS NULL AND callee_device IS NOT NULL
           AND callee_id IS NOT NULL LIMIT $1)
        """,
        limit,
    )
    return [(r["id"], r["party"], r["user_id"]) for r in rows]


async def mark_lost(conn: Executor, call_id: int, party: str, now: datetime) -> bool:
    """Start ``party``'s reconnect grace (if the call is in progress and it has not)."""
    column = "caller_lost_at" if party == "caller" else "callee_lost_at"
    tag = await conn.execute(
        f"UPDATE call_sessions SET {column} = $2"
        f" WHERE id = $1 AND {ACTIVE_SQL} AND {column} IS NULL",
        call_id,
        now,
    )
    return tag == "UPDATE 1"


async def calls_of_device(conn: Executor, user_id: int, address: str) -> list[tuple[int, str]]:
    """The calls in progress in which the socket at ``address`` of ``user_id`` is a
    party's device: (id, "caller" | "callee")."""
    rows = await conn.fetch(
        f"""
        SELECT id, 'caller' AS party FROM call_sessions
        WHERE {ACTIVE_SQL} AND caller_id = $1 AND caller_device = $2
        UNION ALL
        SELECT id, 'callee' FROM call_sessions
        WHERE {ACTIVE_SQL} AND callee_id = $1 AND callee_device = $2
        """,
        user_id,
        address,
    )
    return [(r["id"], r["party"]) for r in rows]


async def ended_among(conn: Executor, call_ids: list[int]) -> list[int]:
    """Which of ``call_ids`` have ended."""
    rows = await conn.fetch(
        "SELECT id FROM call_sessions WHERE id = ANY($1::bigint[]) AND state = 'ended'",
        call_ids,
    )
    return [r["id"] for r in rows]
