"""Queries of accounts and login: users, one-time codes, sessions, refresh tokens, secrets."""

from __future__ import annotations

import json
import secrets as _secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from storage.database import Database
from storage.events import Executor
from storage.retention import delete_batched


@dataclass(frozen=True, slots=True)
class UserRow:
    id: int
    phone: str
    role: str
    full_name: str | None
    is_verified: bool
    is_active: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OtpRow:
    code_digest: bytes | None
    expires_at: datetime | None
    attempts: int
    last_sent_at: datetime | None
    sent_to_ip: str | None


@dataclass(frozen=True, slots=True)
class SessionRow:
    id: UUID
    user_id: int
    device: dict[str, Any]
    ip: str | None
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


_USER_COLUMNS = "id, phone, role, full_name, is_verified, is_active, created_at"


def _user(row: Any) -> UserRow | None:
    return None if row is None else UserRow(*(row[k] for k in UserRow.__slots__))


# --- Secrets shared by all instances ---------------------------------------------------


async def server_secret(db: Database, name: str, size: int = 32) -> bytes:
    """The named secret; the first instance to ask generates it."""
    await db.execute(
        "INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        name,
        _secrets.token_bytes(size),
    )
    value: bytes = await db.fetchval("SELECT value FROM server_secrets WHERE name = $1", name)
    return value


# --- Users ------------------------------------------------------------------------------


async def find_user(db: Executor, phone: str, role: str) -> UserRow | None:
    return _user(
        await db.fetchrow(
            f"SELECT {_USER_COLUMNS} FROM users WHERE phone = $1 AND role = $2", phone, role
        )
    )


async def admin_login(conn: Executor, phone: str) -> UserRow | None:
    """The admin account of ``phone``, its last login set to now if it is active (admins
    are made by operators, never signed up: :func:`upsert_verified_user` is not theirs)."""
    return _user(
        await conn.fetchrow(
            f"""
            UPDATE users SET last_login_at = CASE WHEN is_active THEN now() ELSE last_login_at END
            WHERE phone = $1 AND role = 'admin'
            RETURNING {_USER_COLUMNS}
            """,
            phone,
        )
    )


async def get_user(db: Executor, user_id: int) -> UserRow | None:
    return _user(await db.fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1", user_id))


async def upsert_verified_user(
    db: Executor, phone: str, role: str, full_name: str | None
) -> tuple[UserRow, bool]:
    """The account of (phone, role), created on first login, marked verified (the code
    proved the phone), unless an admin unverified it: that sticks. And whether this
    call created it."""
    row = await db.fetchrow(
        f"""
        INSERT INTO users (phone, role, full_name, is_verified, last_login_at)
        VALUES ($1, $2, $3, true, now())
        ON CONFLICT (phone, role) DO UPDATE
            SET is_verified = NOT users.unverified_by_admin, last_login_at = now(),
                full_name = COALESCE(users.full_name, EXCLUDED.full_name),
                updated_at = now()
        RETURNING {_USER_COLUMNS}, (xmax = 0) AS created
        """,
        phone,
        role,
        full_name,
    )
    user = _user(row)
    assert row is not None and user is not None
    return user, bool(row["created"])


async def create_admin(db: Database, phone: str, full_name: str | None) -> tuple[UserRow, bool]:
    """Create (or re-activate) the admin account of ``phone``; returns (user, created)."""
    row = await db.fetchrow(
        f"""
        INSERT INTO users (phone, role, full_name, is_active)
        VALUES ($1, 'admin', $2, true)
        ON CONFLICT (phone, role) DO UPDATE
            SET is_active = true, full_name = COALESCE(EXCLUDED.full_name, users.full_name),
                updated_at = now()
        RETURNING {_USER_COLUMNS}, (xmax = 0) AS created
        """,
        phone,
        full_name,
    )
    user = _user(row)
    assert row is not None and user is not None
    return user, bool(row["created"])


async def remove_admin(db: Database, phone: str) -> int | None:
    """Deactivate the admin account of ``phone`` and end its sessions (an operator's
    act: admins cannot remove each other). Its id, or None if there is none."""
    async with db.transaction() as conn:
        user_id: int | None = await conn.fetchval(
            "UPDATE users SET is_active = false, updated_at = now()"
            " WHERE phone = $1 AND role = 'admin' RETURNING id",
            phone,
        )
        if user_id is not None:
            await revoke_sessions(conn, user_id, "admin removed by an operator")
    return user_id


# --- One-time codes ---------------------------------------------------------------------


async def lock_otp(conn: Executor, phone: str, role: str) -> OtpRow:
    """Load (creating if absent) and row-lock the code state of (phone, role).

    Call inside a transaction: concurrent sends or verifies of one phone serialize.
    One statement: an insert, or an update that locks the row (a no-op), so a state
    the housekeeping prune deletes meanwhile comes back fresh instead of missing (an
    insert followed by a ``SELECT ... FOR UPDATE`` found nothing in that case).
    """
    row = await conn.fetchrow(
        """
        INSERT INTO otp_challenges AS c (phone, role) VALUES ($1, $2)
        ON CONFLICT (phone, role) DO UPDATE SET phone = c.phone
        RETURNING code_hmac, expires_at, attempts, last_sent_at, sent_to_ip
        """,
        phone,
        role,
    )
    assert row is not None  # an upsert returns its row
    return OtpRow(*row.values())


async def save_otp(conn: Executor, phone: str, role: str, state: OtpRow) -> None:
    await conn.execute(
        """
        UPDATE otp_challenges
        SET code_hmac = $3, expires_at = $4, attempts = $5, last_sent_at = $6, sent_to_ip = $7
        WHERE phone = $1 AND role = $2
        """,
        phone,
        role,
        state.code_digest,
        state.expires_at,
        state.attempts,
        state.last_sent_at,
        state.sent_to_ip,
    )


@dataclass(frozen=True, slots=True)
class Counted:
    """Rows still inside a window: how many, and the time of the oldest."""

    count: int
    oldest: datetime | None


@dataclass(frozen=True, slots=True)
class SendCounts:
    phone: Counted
    ip: Counted
    prefix: Counted


async def count_sends(
    conn: Executor,
    *,
    phone: tuple[str, datetime],
    ip: tuple[str | None, datetime],
    prefix: tuple[str, datetime],
) -> SendCounts:
    """Codes sent to ``phone``, from ``ip`` and to numbers of ``prefix``, each since its
    instant."""
    row = await conn.fetchrow(
        """
        SELECT
          (SELECT count(*) FROM otp_sends WHERE phone = $1 AND sent_at > $2) AS phone_n,
          (SELECT min(sent_at) FROM otp_sends WHERE phone = $1 AND sent_at > $2) AS phone_0,
          (SELECT count(*) FROM otp_sends WHERE ip = $3 AND sent_at > $4) AS ip_n,
          (SELECT min(sent_at) FROM otp_sends WHERE ip = $3 AND sent_at > $4) AS ip_0,
          (SELECT count(*) FROM otp_sends WHERE prefix = $5 AND sent_at > $6) AS prefix_n,
          (SELECT min(sent_at) FROM otp_sends WHERE prefix = $5 AND sent_at > $6) AS prefix_0
        """,
        *phone,
        *ip,
        *prefix,
    )
    return SendCounts(
        Counted(row["phone_n"], row["phone_0"]),
        Counted(row["ip_n"], row["ip_0"]),
        Counted(row["prefix_n"], row["prefix_0"]),
    )


async def record_send(conn: Executor, phone: str, ip: str | None, prefix: str, at: datetime) -> int:
    send_id: int = await conn.fetchval(
        "INSERT INTO otp_sends (phone, ip, prefix, sent_at) VALUES ($1, $2, $3, $4) RETURNING id",
        phone,
        ip,
        prefix,
        at,
    )
    return send_id


async def forget_send(conn: Executor, send_id: int) -> None:
    """A send the gateway refused (nothing was sent): it counts against no cap."""
    await conn.execute("DELETE FROM otp_sends WHERE id = $1", send_id)


async def count_guesses(
    conn: Executor, phone: str, role: str, ip: str | None, since: datetime
) -> tuple[Counted, Counted]:
    """Wrong guesses since ``since``: on (phone, role) from anywhere, and from ``ip``."""
    row = await conn.fetchrow(
        """
        SELECT
          (SELECT count(*) FROM otp_guesses
           WHERE phone = $1 AND role = $2 AND guessed_at > $4) AS phone_n,
          (SELECT min(guessed_at) FROM otp_guesses
           WHERE phone = $1 AND role = $2 AND guessed_at > $4) AS phone_0,
          (SELECT count(*) FROM otp_guesses WHERE ip = $3 AND guessed_at > $4) AS ip_n,
          (SELECT min(guessed_at) FROM otp_guesses WHERE ip = $3 AND guessed_at > $4) AS ip_0
        """,
        phone,
        role,
        ip,
        since,
    )
    return Counted(row["phone_n"], row["phone_0"]), Counted(row["ip_n"], row["ip_0"])


async def record_guess(conn: Executor, phone: str, role: str, ip: str | None, at: datetime) -> None:
    await conn.execute(
        "INSERT INTO otp_guesses (phone, role, ip, guessed_at) VALUES ($1, $2, $3, $4)",
        phone,
        role,
        ip,
        at,
    )


async def prune_otp(db: Database, sends_before: datetime, guesses_before: datetime) -> None:
    await delete_batched(db, "otp_sends", "sent_at < $1", sends_before)
    await delete_batched(db, "otp_guesses", "guessed_at < $1", guesses_before)


async def prune_otp_challenges(db: Database, now: datetime) -> None:
    """Forget code states with nothing left to enforce (no live code or cooldown)."""
    await delete_batched(
        db,
        "otp_challenges",
        "(expires_at IS NULL OR expires_at < $1)"
        " AND (last_sent_at IS NULL OR last_sent_at < $1 - interval '1 hour')",
        now,
    )


# --- Sessions and refresh tokens ------------------------------------------------------


async def create_session(
    conn: Executor,
    session_id: UUID,
    user_id: int,
    device: dict[str, Any],
    ip: str | None,
    expires_at: datetime,
    token_hash: bytes,
) -> None:
    await conn.execute(
        """
        INSERT INTO auth_sessions (id, user_id, device, ip, expires_at)
        VALUES ($1, $2, $3::jsonb, $4, $5)
        """,
        session_id,
        user_id,
        json.dumps(device),
        ip,
        expires_at,
    )
    await conn.execute(
        "INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES ($1, $2, $3)",
        token_hash,
        session_id,
        expires_at,
    )


@dataclass(frozen=True, slots=True)
class RefreshRow:
    session_id: UUID
    user_id: int
    role: str
    user_active: bool
    token_expires_at: datetime
    used_at: datetime | None
    session_revoked_at: datetime | None
    # The token it was rotated to was never used: this one's answer was lost (a retry).
    successor_unused: bool


async def lock_refresh_token(conn: Executor, token_hash: bytes) -> RefreshRow | None:
    """The refresh token with its session and user, row-locked (inside a transaction)."""
    row = await conn.fetchrow(
        """
        SELECT t.session_id, s.user_id, u.role, u.is_active AS user_active,
               t.expires_at AS token_expires_at, t.used_at, s.revoked_at AS session_revoked_at,
               coalesce(n.used_at IS NULL, false) AS successor_unused
        FROM refresh_tokens t
        JOIN auth_sessions s ON s.id = t.session_id
        JOIN users u ON u.id = s.user_id
        LEFT JOIN refresh_tokens n ON n.token_hash = t.replaced_by
        WHERE t.token_hash = $1
        FOR UPDATE OF t, s
        """,
        token_hash,
    )
    return None if row is None else RefreshRow(*row.values())


async def rotate_refresh_token(
    conn: Executor,
    old_hash: bytes,
    new_hash: bytes,
    session_id: UUID,
    expires_at: datetime,
    now: datetime,
) -> None:
    """Retire ``old_hash`` (and any other live token of the session) for ``new_hash``.

    A token keeps the time of its first use: retries within the grace period must not
    extend the grace. ``old_hash`` names ``new_hash`` as its successor; the others were
    retired without being presented and name none (no grace for them).
    """
    await conn.execute(
        """
        UPDATE refresh_tokens
        SET used_at = COALESCE(used_at, $3),
            replaced_by = CASE WHEN token_hash = $1 THEN $4 ELSE replaced_by END
        WHERE session_id = $2 AND (token_hash = $1 OR used_at IS NULL)
        """,
        old_hash,
        session_id,
        now,
        new_hash,
    )
    await conn.execute(
        "INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES ($1, $2, $3)",
        new_hash,
        session_id,
        expires_at,
    )
    await conn.execute(
        "UPDATE auth_sessions SET last_used_at = now(), expires_at = $2 WHERE id = $1",
        session_id,
        expires_at,
    )


async def revoke_sessions(
    db: Executor, user_id: int, reason: str, session_id: UUID | None = None
) -> list[UUID]:
    """Revoke one session of the user (or all when ``session_id`` is None)."""
    rows = await db.fetch(
        """
        UPDATE auth_sessions SET revoked_at = now(), revoke_reason = $3
        WHERE user_id = $1 AND revoked_at IS NULL AND ($2::uuid IS NULL OR id = $2)
        RETURNING id
        """,
        user_id,
        session_id,
        reason,
    )
    return [row["id"] for row in rows]


async def sessions_alive(db: Executor, session_ids: Sequence[UUID]) -> set[UUID]:
    """Those of ``session_ids`` still alive (not revoked, not expired, their user active),
    in one query."""
    rows = await db.fetch(
        """
        SELECT s.id FROM auth_sessions s JOIN users u ON u.id = s.user_id
        WHERE s.id = ANY($1::uuid[]) AND s.revoked_at IS NULL AND s.expires_at > now()
          AND u.is_active
        """,
        list(session_ids),
    )
    return {row["id"] for row in rows}


async def list_sessions(db: Executor, user_id: int) -> list[SessionRow]:
    rows = await db.fetch(
        """
        SELECT id, user_id, device::text AS device, ip, created_at, last_used_at, expires_at,
               revoked_at
        FROM auth_sessions
        WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
        ORDER BY last_used_at DESC
        """,
        user_id,
    )
    return [
        SessionRow(
            r["id"],
            r["user_id"],
            json.loads(r["device"]),
            r["ip"],
            r["created_at"],
            r["last_used_at"],
            r["expires_at"],
            r["revoked_at"],
        )
        for r in rows
    ]


async def prune_auth(db: Database) -> None:
    """Drop refresh tokens and sessions long expired (kept a week for reuse detection)."""
    await delete_batched(db, "refresh_tokens", "expires_at < now() - interval '7 days'")
    await delete_batched(db, "auth_sessions", "expires_at < now() - interval '7 days'")
