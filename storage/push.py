"""Queries of push delivery (tables ``push_devices``, ``push_settings``,
``push_deliveries``, ``push_logs``; migration 0031)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson

from storage import jobs as job_store
from storage.database import Database
from storage.events import Executor
from storage.retention import delete_batched

CATEGORIES = ("bookings", "calls", "payments", "reminders", "promotional")


@dataclass(frozen=True, slots=True)
class Device:
    user_id: int
    device_id: str
    platform: str
    provider: str
    token: str
    web_keys: dict[str, str] | None
    app_version: str | None
    registered_at: datetime


def _device(row: object) -> Device:
    r = row  # an asyncpg Record
    keys = r["web_keys"]  # type: ignore[index]
    return Device(
        user_id=r["user_id"],  # type: ignore[index]
        device_id=r["device_id"],  # type: ignore[index]
        platform=r["platform"],  # type: ignore[index]
        provider=r["provider"],  # type: ignore[index]
        token=r["token"],  # type: ignore[index]
        web_keys=orjson.loads(keys) if keys is not None else None,
        app_version=r["app_version"],  # type: ignore[index]
        registered_at=r["registered_at"],  # type: ignore[index]
    )


_DEVICE_COLUMNS = (
    "user_id, device_id, platform, provider, token, web_keys, app_version, registered_at"
)


async def register_device(db: Database, device: Device, *, max_devices: int) -> Device:
    """Store ``device`` (replacing the user's row of the same device id), take its token
    from any other row, and keep the user's ``max_devices`` newest devices."""
    async with db.transaction() as conn:
        await conn.execute(
            """
            DELETE FROM push_devices
            WHERE provider = $1 AND token = $2 AND (user_id, device_id) <> ($3, $4)
            """,
            device.provider,
            device.token,
            device.user_id,
            device.device_id,
        )
        row = await conn.fetchrow(
            f"""
            INSERT INTO push_devices ({_DEVICE_COLUMNS})
            VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)
            ON CONFLICT (user_id, device_id) DO UPDATE SET
                platform = EXCLUDED.platform, provider = EXCLUDED.provider,
                token = EXCLUDED.token, web_keys = EXCLUDED.web_keys,
                app_version = EXCLUDED.app_version, registered_at = EXCLUDED.registered_at
            RETURNING {_DEVICE_COLUMNS}
            """,
            device.user_id,
            device.device_id,
            device.platform,
            device.provider,
            device.token,
            None if device.web_keys is None else orjson.dumps(device.web_keys).decode(),
            device.app_version,
            device.registered_at,
        )
        await conn.execute(
            """
            DELETE FROM push_devices WHERE user_id = $1 AND device_id IN (
                SELECT device_id FROM push_devices WHERE user_id = $1
                ORDER BY registered_at DESC, device_id OFFSET $2
            )
            """,
            device.user_id,
            max_devices,
        )
    return _device(row)


async def unregister_device(db: Executor, user_id: int, device_id: str) -> bool:
    status = await db.execute(
        "DELETE FROM push_devices WHERE user_id = $1 AND device_id = $2", user_id, device_id
    )
    return status == "DELETE 1"


async def devices_of(db: Executor, user_id: int) -> list[Device]:
    rows = await db.fetch(
        f"SELECT {_DEVICE_COLUMNS} FROM push_devices WHERE user_id = $1 ORDER BY device_id",
        user_id,
    )
    return [_device(r) for r in rows]


async def settings_of(db: Executor, user_id: int) -> dict[str, bool]:
    row = await db.fetchrow(
        f"SELECT {', '.join(CATEGORIES)} FROM push_settings WHERE user_id = $1", user_id
    )
    if row is None:
        return {c: c != "promotional" for c in CATEGORIES}
    return {c: row[c] for c in CATEGORIES}


async def update_settings(
    db: Executor, user_id: int, changes: dict[str, bool | None], now: datetime
) -> dict[str, bool]:
    """Set the categories in ``changes`` (None or missing: unchanged), in one statement
    (two concurrent updates of different categories both apply); returns all of them."""
    values = [changes.get(c) for c in CATEGORIES]
    columns = ", ".join(CATEGORIES)
    inserted = ", ".join(
        f"COALESCE(${i + 2}::boolean, {'false' if c == 'promotional' else 'true'})"
        for i, c in enumerate(CATEGORIES)
    )
    updates = ", ".join(
        f"{c} = COALESCE(${i + 2}::boolean, s.{c})" for i, c in enumerate(CATEGORIES)
    )
    row = await db.fetchrow(
        f"""
        INSERT INTO push_settings AS s (user_id, {columns}, updated_at)
        VALUES ($1, {inserted}, ${len(CATEGORIES) + 2})
        ON CONFLICT (user_id) DO UPDATE SET {updates}, updated_at = EXCLUDED.updated_at
        RETURNING {columns}
        """,
        user_id,
        *values,
        now,
    )
    return {c: row[c] for c in CATEGORIES}


# --- Deliveries: at most one push per (user, event seq, device) ------------------------


@dataclass(frozen=True, slots=True)
class DecisionInputs:
    acked_seq: int
    wanted: bool  # the user wants the category pushed
    device_ids: list[str]  # the user's devices of the given providers


async def decision_inputs(
    db: Executor, user_id: int, category: str, providers: Sequence[str]
) -> DecisionInputs:
    """Everything a push decision reads, in one round trip."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown push category {category!r}")
    default = "false" if category == "promotional" else "true"
    row = await db.fetchrow(
        f"""
        SELECT COALESCE((SELECT acked_seq FROM user_event_cursors WHERE user_id = $1), 0)
                   AS acked_seq,
               COALESCE((SELECT {category} FROM push_settings WHERE user_id = $1), {default})
                   AS wanted,
               array(SELECT device_id FROM push_devices
                     WHERE user_id = $1 AND provider = ANY($2::text[]) ORDER BY device_id)
                   AS device_ids
        """,
        user_id,
        list(providers),
    )
    return DecisionInputs(row["acked_seq"], row["wanted"], list(row["device_ids"]))


@dataclass(frozen=True, slots=True)
class Sent:
    """What a push says, kept with its delivery rows for support (admin.push.history)."""

    event: str
    category: str
    title: str
    body: str


# Characters of a notice's title and body kept (a push's whole payload is ~4 KB).
_TEXT_KEPT = 1000

_DECIDE_AND_ENQUEUE = f"""
WITH decided AS (
    INSERT INTO push_deliveries (user_id, seq, device_id, status, created_at, event, category,
                                 title, body, platform, provider)
    SELECT $1, $2, u.d, 'pending', $4, $8, $9, $10, $11, v.platform, v.provider
    FROM unnest($3::text[]) AS u (d)
    LEFT JOIN push_devices v ON v.user_id = $1 AND v.device_id = u.d
    ON CONFLICT DO NOTHING
    RETURNING device_id
), queued AS (
    INSERT INTO jobs (kind, payload, run_at, dedup_key, max_attempts, created_at)
    SELECT $7, $5::jsonb || jsonb_build_object('d', device_id), $4,
           'push:' || $1 || ':' || $2 || ':' || device_id, $6, $4
    FROM decided
    ON CONFLICT (dedup_key) DO NOTHING
    RETURNING id
)
SELECT count(*) AS queued,
       CASE WHEN count(*) > 0 THEN pg_notify('{job_store.CHANNEL}', '') END AS notified
FROM queued
"""


async def decide_and_enqueue(
    db: Executor,
    user_id: int,
    seq: int,
    device_ids: list[str],
    now: datetime,
    *,
    send_kind: str,
    send_payload: str,
    max_attempts: int,
    sent: Sent,
) -> int:
    """Record the push of event ``seq`` to each device as pending (with what it says,
    ``sent``, and the device's kind) and enqueue one ``send_kind`` job (``send_payload``
    plus the device id) per device decided now, in one statement; a device already
    decided for this event is left out. Returns the number of sends enqueued. (The job
    rows follow ``storage.jobs``; workers are woken.)
    """
    if not device_ids:
        return 0
    row = await db.fetchrow(
        _DECIDE_AND_ENQUEUE,
        user_id,
        seq,
        device_ids,
        now,
        send_payload,
        max_attempts,
        send_kind,
        sent.event,
        sent.category,
        sent.title[:_TEXT_KEPT],
        sent.body[:_TEXT_KEPT],
    )
    return int(row["queued"])


@dataclass(frozen=True, slots=True)
class PendingSend:
    """What a send needs to know, read in one round trip."""

    status: str | None  # the delivery row's status (None: no such row)
    acked_seq: int
    device: Device | None


async def pending_send(db: Executor, user_id: int, seq: int, device_id: str) -> PendingSend:
    row = await db.fetchrow(
        f"""
        SELECT d.status, COALESCE(c.acked_seq, 0) AS acked_seq, {
            ", ".join(f"v.{c}" for c in _DEVICE_COLUMNS.split(", "))
        }
        FROM push_deliveries d
        LEFT JOIN user_event_cursors c ON c.user_id = d.user_id
        LEFT JOIN push_devices v ON v.user_id = d.user_id AND v.device_id = d.device_id
        WHERE d.user_id = $1 AND d.seq = $2 AND d.device_id = $3
        """,
        user_id,
        seq,
        device_id,
    )
    if row is None:
        return PendingSend(None, 0, None)
    device = _device(row) if row["token"] is not None else None
    return PendingSend(row["status"], row["acked_seq"], device)


async def finish_delivery(
    db: Executor,
    user_id: int,
    seq: int,
    device_id: str,
    status: str,
    reason: str | None,
    now: datetime,
) -> bool:
    """Move a pending delivery to ``status`` (sent, skipped, failed); False if it was
    not pending any more."""
    result = await db.execute(
        """
        UPDATE push_deliveries SET status = $4, reason = $5, decided_at = $6
        WHERE user_id = $1 AND seq = $2 AND device_id = $3 AND status = 'pending'
        """,
        user_id,
        seq,
        device_id,
        status,
        reason,
        now,
    )
    return result == "UPDATE 1"


@dataclass(frozen=True, slots=True)
class Attempt:
    user_id: int
    seq: int
    device_id: str
    provider: str
    outcome: str
    http_status: int | None
    provider_code: str | None
    latency_ms: float
    at: datetime


_RECORD = """
WITH logged AS (
    INSERT INTO push_logs (user_id, seq, device_id, provider, outcome, http_status,
                           provider_code, latency_ms, at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
), counted AS (
    UPDATE push_deliveries SET
        attempts = attempts + 1, http_status = $6, provider_code = $7,
        status = coalesce($10::text, status),
        reason = CASE WHEN $10::text IS NULL THEN reason ELSE $11 END,
        decided_at = CASE WHEN $10::text IS NULL THEN decided_at ELSE $9 END
    WHERE user_id = $1 AND seq = $2 AND device_id = $3 AND status = 'pending'
), forgotten AS (
    DELETE FROM push_devices
    WHERE $12 AND provider = $4 AND token = $13
      AND ($14::timestamptz IS NULL OR registered_at < $14)
    RETURNING 1
)
SELECT count(*) AS deleted FROM forgotten
"""


async def record_attempt(
    db: Executor,
    attempt: Attempt,
    *,
    finish: tuple[str, str] | None,
    forget_token: str | None = None,
    registered_before: datetime | None = None,
) -> bool:
    """Log ``attempt`` (also counted on its pending delivery, with its HTTP status and
    provider code), move the delivery to ``finish`` (status, reason) if given, and
    delete the device holding ``forget_token`` (registered before ``registered_before``,
    if given), in one statement; returns whether a token was deleted."""
    a = attempt
    row = await db.fetchrow(
        _RECORD,
        a.user_id,
        a.seq,
        a.device_id,
        a.provider,
        a.outcome,
        a.http_status,
        a.provider_code,
        a.latency_ms,
        a.at,
        finish[0] if finish else None,
        finish[1] if finish else None,
        forget_token is not None,
        forget_token or "",
        registered_before,
    )
    return bool(row["deleted"])


async def prune(db: Database, before: datetime) -> int:
    """Delete deliveries and log rows older than ``before``, in batches
    (:func:`storage.retention.delete_batched`); returns rows."""
    deliveries = await delete_batched(db, "push_deliveries", "created_at < $1", before)
    return deliveries + await delete_batched(db, "push_logs", "at < $1", before)


# --- Support: the pushes of one user (admin.push.history) --------------------------------


@dataclass(frozen=True, slots=True)
class SentRow:
    """One delivery of a push to one device of the user."""

    seq: int
    device_id: str
    event: str | None  # None: decided before these were kept (migration 0069)
    category: str | None
    title: str | None
    body: str | None
    platform: str | None
    provider: str | None
    status: str
    reason: str | None
    attempts: int
    http_status: int | None
    provider_code: str | None
    created_at: datetime
    decided_at: datetime | None


async def sent_to(
    db: Executor, user_id: int, *, before_seq: int | None, limit: int
) -> list[SentRow]:
    """The deliveries of the user's ``limit`` newest pushed events (by event seq) before
    ``before_seq``, newest first, each event's devices in order (the primary key's
    range: no sort of the user's whole history)."""
    rows = await db.fetch(
        f"""
        WITH page AS (
            SELECT DISTINCT seq FROM push_deliveries
            WHERE user_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3
        )
        SELECT {", ".join(f"d.{c}" for c in SentRow.__slots__)}
        FROM page JOIN push_deliveries d ON d.user_id = $1 AND d.seq = page.seq
        ORDER BY d.seq DESC, d.device_id
        """,
        user_id,
        before_seq or 2**63 - 1,
        limit,
    )
    return [SentRow(*(r[c] for c in SentRow.__slots__)) for r in rows]


# --- Push intents (migration 0007): events the domain marked for a push -----------------


@dataclass(frozen=True, slots=True)
class Intent:
    user_id: int
    seq: int
    event: str
    due_at: datetime
    payload: str | None  # the event's JSON text (None: pruned from the log meanwhile)


async def take_intents(db: Executor, limit: int, now: datetime) -> list[Intent]:
    """Take up to ``limit`` intents not handed to push delivery yet (``sent_at`` is
    set to ``now``: handed over), with their events' payloads. Concurrent takers skip
    each other's rows."""
    rows = await db.fetch(
        """
        WITH taken AS (
            SELECT user_id, seq FROM push_intents WHERE sent_at IS NULL
            ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED
        )
        UPDATE push_intents i SET sent_at = $2 FROM taken
        WHERE i.user_id = taken.user_id AND i.seq = taken.seq
        RETURNING i.user_id, i.seq, i.event, i.due_at,
            (SELECT e.payload::text FROM user_events e
             WHERE e.user_id = i.user_id AND e.seq = i.seq) AS payload
        """,
        limit,
        now,
    )
    return [Intent(r["user_id"], r["seq"], r["event"], r["due_at"], r["payload"]) for r in rows]
