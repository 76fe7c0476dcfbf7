"""Queries of uploaded images (table ``uploads``, and ``upload_grants`` for the hourly
rate): issuing an upload, claiming its one request, storing what it became, attaching
and replacing, what listings and admins see, and the prune.

Rows carry their owner's role and verified flag (who may see a file publicly depends
on them); rows of an erased account have no owner and are pruned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from storage.events import Executor

PURPOSES = ("profilePicture", "workingProof", "certificate", "reportEvidence")


@dataclass(frozen=True, slots=True)
class UploadRow:
    id: UUID
    owner_id: int | None
    purpose: str
    state: str
    report_id: int | None
    image_key: str | None
    thumb_key: str | None
    content_type: str | None
    bytes: int
    width: int | None
    height: int | None
    sha256: str | None
    thumb_bytes: int
    thumb_width: int | None
    thumb_height: int | None
    thumb_sha256: str | None
    created_at: datetime
    received_at: datetime | None
    expires_at: datetime | None
    attached_at: datetime | None
    position: int
    owner_role: str | None  # of the users row (None: erased)
    owner_verified: bool


@dataclass(frozen=True, slots=True)
class Stored:
    """What processing an upload stored: the image and its thumbnail."""

    image_key: str
    thumb_key: str
    content_type: str
    bytes: int
    width: int
    height: int
    sha256: str
    thumb_bytes: int
    thumb_width: int
    thumb_height: int
    thumb_sha256: str


_SELECT = """
    SELECT up.*, ow.role AS owner_role, coalesce(ow.is_verified, false) AS owner_verified
    FROM up LEFT JOIN users ow ON ow.id = up.owner_id
"""


def _row(row: Any) -> UploadRow:
    return UploadRow(*(row[k] for k in UploadRow.__slots__))


# --- Issuing and receiving ---------------------------------------------------------------


async def grants_since(
    conn: Executor, user_id: int, since: datetime
) -> tuple[int, datetime | None]:
    """Row-lock the user (one user's grants are counted one at a time), then count
    their upload grants since ``since`` and the oldest of them."""
    await conn.execute("SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE", user_id)
    row = await conn.fetchrow(
        "SELECT count(*) AS n, min(granted_at) AS oldest FROM upload_grants"
        " WHERE user_id = $1 AND granted_at > $2",
        user_id,
        since,
    )
    return row["n"], row["oldest"]


async def stored_bytes(db: Executor, user_id: int) -> int:
    """Bytes of the user's stored uploads (images and thumbnails), for the quota."""
    total = await db.fetchval(
        "SELECT coalesce(sum(bytes + thumb_bytes), 0) FROM uploads"
        " WHERE owner_id = $1 AND state IN ('ready', 'attached')",
        user_id,
    )
    return int(total)


async def issue(
    conn: Executor, upload_id: UUID, user_id: int, purpose: str, now: datetime, expires: datetime
) -> None:
    """A pending upload and its grant (counted by the hourly rate)."""
    await conn.execute(
        "INSERT INTO uploads (id, owner_id, purpose, created_at, expires_at)"
        " VALUES ($1, $2, $3, $4, $5)",
        upload_id,
        user_id,
        purpose,
        now,
        expires,
    )
    await conn.execute(
        "INSERT INTO upload_grants (user_id, granted_at) VALUES ($1, $2)", user_id, now
    )


async def claim(
    db: Executor, upload_id: UUID, now: datetime, hold_until: datetime
) -> UploadRow | None:
    """Take a pending upload for the one request that may send its file (kept from the
    prune until ``hold_until``); None if it is used (or being used), expired or gone."""
    row = await db.fetchrow(
        f"""
        WITH up AS (
            UPDATE uploads SET received_at = $2, expires_at = greatest(expires_at, $3)
            WHERE id = $1 AND state = 'pending' AND received_at IS NULL AND expires_at > $2
              AND owner_id IS NOT NULL
            RETURNING *
        ) {_SELECT}
        """,
        upload_id,
        now,
        hold_until,
    )
    return None if row is None else _row(row)


async def forget(db: Executor, upload_id: UUID) -> None:
    """Remove a pending upload whose file was refused: nothing of it stays."""
    await db.execute("DELETE FROM uploads WHERE id = $1 AND state = 'pending'", upload_id)


async def lock_owner(conn: Executor, owner_id: int) -> bool:
    """Serialise the quota checks of one owner's uploads (the user row, ``FOR NO KEY
    UPDATE``, as an erasure takes it first too); False if the account is gone."""
    return bool(
        await conn.fetchval("SELECT true FROM users WHERE id = $1 FOR NO KEY UPDATE", owner_id)
    )


async def mark_ready(
    db: Executor, upload_id: UUID, stored: Stored, expires: datetime
) -> UploadRow | None:
    """Record what was stored for a claimed upload; None if the upload is gone (its
    account erased meanwhile): then the caller deletes the objects."""
    row = await db.fetchrow(
        f"""
        WITH up AS (
            UPDATE uploads SET state = 'ready', image_key = $2, thumb_key = $3,
                content_type = $4, bytes = $5, width = $6, height = $7, sha256 = $8,
                thumb_bytes = $9, thumb_width = $10, thumb_height = $11, thumb_sha256 = $12,
                expires_at = $13
            WHERE id = $1 AND state = 'pending' AND owner_id IS NOT NULL
            RETURNING *
        ) {_SELECT}
        """,
        upload_id,
        stored.image_key,
        stored.thumb_key,
        stored.content_type,
        stored.bytes,
        stored.width,
        stored.height,
        stored.sha256,
        stored.thumb_bytes,
        stored.thumb_width,
        stored.thumb_height,
        stored.thumb_sha256,
        expires,
    )
    return None if row is None else _row(row)


# --- Attaching ---------------------------------------------------------------------------


async def lock_for_attach(
    conn: Executor, owner_id: int, purpose: str, wanted: Sequence[UUID], report_id: int | None
) -> tuple[list[UploadRow], list[UploadRow]]:
    """Row-lock (in id order) the uploads asked for and those attached now in the slot
    they would fill (the owner's of ``purpose``, or the report's evidence); returns
    (wanted found, attached now)."""
    slot = "up.report_id = $4" if report_id is not None else "up.report_id IS NULL"
    rows = await conn.fetch(
        f"""
        WITH up AS (
            SELECT * FROM uploads up
            WHERE up.id = ANY($1::uuid[])
               OR (up.owner_id = $2 AND up.purpose = $3 AND up.state = 'attached' AND {slot})
            ORDER BY up.id
            FOR UPDATE
        ) {_SELECT}
        """,
        list(wanted),
        owner_id,
        purpose,
        *([report_id] if report_id is not None else []),
    )
    found = [_row(r) for r in rows]
    asked = set(wanted)
    current = [
        r
        for r in found
        if r.owner_id == owner_id
        and r.purpose == purpose
        and r.state == "attached"
        and r.report_id == report_id
    ]
    return [r for r in found if r.id in asked], current


async def attach(
    conn: Executor, upload_ids: Sequence[UUID], now: datetime, report_id: int | None
) -> None:
    """Attach these (ready, or attached in this slot already), in this order."""
    await conn.execute(
        """
        UPDATE uploads u SET state = 'attached', expires_at = NULL, report_id = $3,
            attached_at = coalesce(u.attached_at, $2), position = t.ord
        FROM unnest($1::uuid[]) WITH ORDINALITY AS t (id, ord)
        WHERE u.id = t.id AND u.state IN ('ready', 'attached')
        """,
        list(upload_ids),
        now,
        report_id,
    )


async def mark_deleted(conn: Executor, upload_ids: Sequence[UUID]) -> None:
    await conn.execute(
        "UPDATE uploads SET state = 'deleted' WHERE id = ANY($1::uuid[])", list(upload_ids)
    )


async def close_account(conn: Executor, owner_id: int) -> list[UploadRow]:
    """Mark every upload of an account being erased deleted; returns them (their
    objects are deleted after the commit, or by the prune)."""
    rows = await conn.fetch(
        f"""
        WITH up AS (
            UPDATE uploads SET state = 'deleted' WHERE owner_id = $1 RETURNING *
        ) {_SELECT}
        """,
        owner_id,
    )
    return [_row(r) for r in rows]


async def remove(db: Executor, upload_ids: Sequence[UUID]) -> int:
    """Delete the rows of uploads whose objects are gone (deleted or ownerless only)."""
    tag = await db.execute(
        "DELETE FROM uploads WHERE id = ANY($1::uuid[])"
        " AND (state = 'deleted' OR owner_id IS NULL)",
        list(upload_ids),
    )
    return int(tag.rsplit(" ", 1)[-1])


# --- Reading -----------------------------------------------------------------------------


async def get(db: Executor, upload_id: UUID) -> UploadRow | None:
    row = await db.fetchrow(
        f"WITH up AS (SELECT * FROM uploads WHERE id = $1) {_SELECT}", upload_id
    )
    return None if row is None else _row(row)


async def account_exists(db: Executor, user_id: int) -> bool:
    return await db.fetchval("SELECT 1 FROM users WHERE id = $1", user_id) is not None


async def attached_of(
    db: Executor, owner_ids: Sequence[int], purposes: Sequence[str]
) -> list[UploadRow]:
    """The uploads attached to these owners' profiles (no report evidence), oldest
    first."""
    rows = await db.fetch(
        f"""
        WITH up AS (
            SELECT * FROM uploads
            WHERE owner_id = ANY($1::bigint[]) AND purpose = ANY($2::text[])
              AND state = 'attached' AND report_id IS NULL
        ) {_SELECT} ORDER BY up.position, up.attached_at, up.id
        """,
        list(owner_ids),
        list(purposes),
    )
    return [_row(r) for r in rows]


async def of_listings(
    db: Executor, listing_ids: Sequence[int], purposes: Sequence[str]
) -> list[tuple[int, UploadRow]]:
    """(listing id, upload) for the attached uploads of ``purposes`` of the providers of
    these listings (registrations), oldest first."""
    rows = await db.fetch(
        f"""
        WITH up AS (
            SELECT u.*, ps.id AS listing_id FROM provider_services ps
            JOIN uploads u ON u.owner_id = ps.provider_id
            WHERE ps.id = ANY($1::bigint[]) AND u.purpose = ANY($2::text[])
              AND u.state = 'attached' AND u.report_id IS NULL
        ) {_SELECT} ORDER BY up.position, up.attached_at, up.id
        """,
        list(listing_ids),
        list(purposes),
    )
    return [(r["listing_id"], _row(r)) for r in rows]


async def of_reports(db: Executor, report_ids: Sequence[int]) -> list[UploadRow]:
    """The evidence attached to these reports, in the order it was given."""
    rows = await db.fetch(
        f"""
        WITH up AS (
            SELECT * FROM uploads
            WHERE report_id = ANY($1::bigint[]) AND state = 'attached'
        ) {_SELECT} ORDER BY up.position, up.attached_at, up.id
        """,
        list(report_ids),
    )
    return [_row(r) for r in rows]


# --- The prune ---------------------------------------------------------------------------


async def prunable(db: Executor, now: datetime, limit: int) -> list[UploadRow]:
    """Uploads to remove: unattached past their time (never received, or processed
    and never attached), deleted ones, and those of erased accounts."""
    rows = await db.fetch(
        f"""
        WITH up AS (
            (SELECT * FROM uploads
             WHERE state IN ('pending', 'ready') AND expires_at <= $1 LIMIT $2)
            UNION
            (SELECT * FROM uploads WHERE state = 'deleted' OR owner_id IS NULL LIMIT $2)
        ) {_SELECT} LIMIT $2
        """,
        now,
        limit,
    )
    return [_row(r) for r in rows]


async def remove_expired(db: Executor, upload_ids: Sequence[UUID], now: datetime) -> int:
    """Delete the rows of these uploads if they are still prunable (an upload attached
    meanwhile stays)."""
    tag = await db.execute(
        """
        DELETE FROM uploads WHERE id = ANY($1::uuid[])
          AND (state = 'deleted' OR owner_id IS NULL
               OR (state IN ('pending', 'ready') AND expires_at <= $2))
        """,
        list(upload_ids),
        now,
    )
    return int(tag.rsplit(" ", 1)[-1])
