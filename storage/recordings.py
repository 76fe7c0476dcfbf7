"""Queries of recordings: one row per recorded call, one per leg (file) of it.

A recording is inserted when the server's media path starts for a call (state
``recording``), finished once with its legs (``ready`` or ``failed``), and marked
``deleted`` by retention once its files are gone. The rows never hold a path outside
the store: ``storage_key`` is a key under ``recordings/`` of the object store
(:mod:`recordings.store`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from storage.events import Executor


@dataclass(frozen=True, slots=True)
class LegRow:
    leg: str
    user_id: int | None
    storage_key: str
    codec: str
    bytes: int
    duration_ms: int
    packets: int
    lost: int
    sha256: str
    error: str | None
    offset_ms: int = 0  # where the leg starts on the call's timeline


@dataclass(frozen=True, slots=True)
class RecordingRow:
    id: int
    call_id: int
    instance_id: str
    state: str
    error: str | None
    duration_ms: int | None
    started_at: datetime
    ended_at: datetime | None
    deleted_at: datetime | None
    # Both legs in one file, made by a job after the call (None until then).
    mixed_key: str | None
    mixed_bytes: int | None
    mixed_sha256: str | None
    mixed_duration_ms: int | None
    # The call's parties (who may get a link when parties may download).
    caller_id: int | None
    callee_id: int | None
    booking_id: int | None
    legs: tuple[LegRow, ...]


_SELECT = """
    SELECT r.*, c.caller_id, c.callee_id, c.booking_id,
           COALESCE((SELECT jsonb_agg(to_jsonb(l) ORDER BY l.leg DESC)
                     FROM recording_legs l WHERE l.recording_id = r.id), '[]') AS legs
    FROM recordings r JOIN call_sessions c ON c.id = r.call_id
"""

_LEG_FIELDS = tuple(LegRow.__dataclass_fields__)


def _recording(row: Any) -> RecordingRow:
    data = dict(row)
    legs_json = data.pop("legs")
    legs_data = orjson.loads(legs_json) if isinstance(legs_json, str) else legs_json
    legs = tuple(LegRow(**{k: leg[k] for k in _LEG_FIELDS}) for leg in legs_data)
    return RecordingRow(**data, legs=legs)


async def start(conn: Executor, call_id: int, instance_id: str, now: datetime) -> int:
    """The recording of ``call_id`` (inserted by the first to ask)."""
    recording_id: int | None = await conn.fetchval(
        """INSERT INTO recordings (call_id, instance_id, started_at) VALUES ($1, $2, $3)
           ON CONFLICT (call_id) DO NOTHING RETURNING id""",
        call_id,
        instance_id,
        now,
    )
    if recording_id is None:
        recording_id = await conn.fetchval("SELECT id FROM recordings WHERE call_id = $1", call_id)
    assert recording_id is not None
    return recording_id


async def finish(
    conn: Executor,
    recording_id: int,
    *,
    legs: list[LegRow],
    error: str | None,
    duration_ms: int,
    now: datetime,
) -> bool:
    """Record the finished legs; ``ready`` unless ``error``. False if already finished."""
    state = "failed" if error else "ready"
    done = await conn.fetchval(
        """UPDATE recordings SET state = $2, error = $3, duration_ms = $4, ended_at = $5
           WHERE id = $1 AND state = 'recording' RETURNING true""",
        recording_id,
        state,
        error,
        duration_ms,
        now,
    )
    if not done:
        return False
    if legs:
        await conn.execute(
            """INSERT INTO recording_legs (recording_id, leg, user_id, storage_key, codec,
                   bytes, duration_ms, packets, lost, sha256, error, offset_ms)
               SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::text[], $5::text[],
                   $6::bigint[], $7::int[], $8::int[], $9::int[], $10::text[], $11::text[],
                   $12::int[])""",
            recording_id,
            [leg.leg for leg in legs],
            [leg.user_id for leg in legs],
            [leg.storage_key for leg in legs],
            [leg.codec for leg in legs],
            [leg.bytes for leg in legs],
            [leg.duration_ms for leg in legs],
            [leg.packets for leg in legs],
            [leg.lost for leg in legs],
            [leg.sha256 for leg in legs],
            [leg.error for leg in legs],
            [leg.offset_ms for leg in legs],
        )
    return True


async def set_mixed(
    conn: Executor, recording_id: int, *, key: str, size: int, sha256: str, duration_ms: int
) -> bool:
    """Record the mixed file of a recording not deleted meanwhile."""
    done = await conn.fetchval(
        """UPDATE recordings SET mixed_key = $2, mixed_bytes = $3, mixed_sha256 = $4,
               mixed_duration_ms = $5
           WHERE id = $1 AND state <> 'deleted' RETURNING true""",
        recording_id,
        key,
        size,
        sha256,
        duration_ms,
    )
    return bool(done)


async def get(conn: Executor, recording_id: int) -> RecordingRow | None:
    row = await conn.fetchrow(_SELECT + " WHERE r.id = $1", recording_id)
    return None if row is None else _recording(row)


async def of_call(conn: Executor, call_id: int) -> RecordingRow | None:
    row = await conn.fetchrow(_SELECT + " WHERE r.call_id = $1", call_id)
    return None if row is None else _recording(row)


async def page(
    conn: Executor, *, call_id: int | None, before_id: int | None, limit: int
) -> list[RecordingRow]:
    """Recordings not deleted, newest first (of one call or all)."""
    rows = await conn.fetch(
        _SELECT
        + """ WHERE r.state <> 'deleted' AND ($1::bigint IS NULL OR r.call_id = $1)
              AND ($2::bigint IS NULL OR r.id < $2)
            ORDER BY r.id DESC LIMIT $3""",
        call_id,
        before_id,
        limit,
    )
    return [_recording(r) for r in rows]


async def expired(conn: Executor, ended_before: datetime, limit: int) -> list[RecordingRow]:
    """Finished recordings past retention, oldest first."""
    rows = await conn.fetch(
        _SELECT
        + """ WHERE r.state IN ('ready', 'failed') AND r.ended_at < $1
            ORDER BY r.ended_at LIMIT $2""",
        ended_before,
        limit,
    )
    return [_recording(r) for r in rows]


async def mark_deleted(conn: Executor, recording_ids: list[int], now: datetime) -> int:
    done = await conn.fetchval(
        """WITH d AS (UPDATE recordings SET state = 'deleted', deleted_at = $2
                      WHERE id = ANY($1::bigint[]) AND state IN ('ready', 'failed')
                      RETURNING 1)
           SELECT count(*) FROM d""",
        recording_ids,
        now,
    )
    return int(done)


async def abandon(conn: Executor, ended_before: datetime, now: datetime) -> list[int]:
    """Mark failed the recordings still open whose call ended before ``ended_before``:
    the instance carrying their media died before it could finish them."""
    rows = await conn.fetch(
        """UPDATE recordings r SET state = 'failed', ended_at = $2,
               error = 'the media instance stopped before the recording was finished'
           FROM call_sessions c
           WHERE c.id = r.call_id AND r.state = 'recording' AND c.state = 'ended'
             AND c.ended_at < $1
           RETURNING r.id""",
        ended_before,
        now,
    )
    return [r["id"] for r in rows]


async def open_of_instance(conn: Executor, instance_id: str) -> int:
    """Recorded calls in progress whose media this instance carries (the cap)."""
    count: int = await conn.fetchval(
        """SELECT count(*) FROM call_sessions
           WHERE instance_id = $1 AND media = 'recorded' AND state <> 'ended'""",
        instance_id,
    )
    return count
