"""Queries of a user's own profile: name (with its change counter) and email."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.events import Executor


@dataclass(frozen=True, slots=True)
class ProfileRow:
    id: int
    phone: str
    role: str
    full_name: str | None
    email: str | None
    name_change_count: int
    is_verified: bool
    created_at: datetime


_COLUMNS = "id, phone, role, full_name, email, name_change_count, is_verified, created_at"


def _profile(row: Any) -> ProfileRow | None:
    return None if row is None else ProfileRow(*(row[k] for k in ProfileRow.__slots__))


async def get_profile(db: Executor, user_id: int) -> ProfileRow | None:
    return _profile(await db.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE id = $1", user_id))


async def lock_profile(conn: Executor, user_id: int) -> ProfileRow | None:
    """The profile, row-locked until the transaction ends (serializes name changes)."""
    return _profile(
        await conn.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE id = $1 FOR UPDATE", user_id)
    )


async def save_profile(
    conn: Executor, user_id: int, full_name: str | None, email: str | None, name_change_count: int
) -> ProfileRow:
    """Write the profile fields; raises ``UniqueViolation`` if the email is taken."""
    profile = _profile(
        await conn.fetchrow(
            f"""
            UPDATE users SET full_name = $2, email = $3, name_change_count = $4, updated_at = now()
            WHERE id = $1
            RETURNING {_COLUMNS}
            """,
            user_id,
            full_name,
            email,
            name_change_count,
        )
    )
    assert profile is not None
    return profile
