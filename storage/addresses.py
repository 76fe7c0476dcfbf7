"""Queries of users' addresses. Every query names the owner: no address is reachable
by id alone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.events import Executor


@dataclass(frozen=True, slots=True)
class AddressRow:
    id: int
    type: str
    state: str
    city: str | None
    full_address: str
    pincode: str | None
    created_at: datetime
    updated_at: datetime


_COLUMNS = "id, type, state, city, full_address, pincode, created_at, updated_at"


def _address(row: Any) -> AddressRow | None:
    return None if row is None else AddressRow(*(row[k] for k in AddressRow.__slots__))


async def list_addresses(
    db: Executor, user_id: int, *, after_id: int | None, limit: int
) -> list[AddressRow]:
    """The user's addresses in creation order, ``limit`` after ``after_id`` (keyset)."""
    rows = await db.fetch(
        f"""
        SELECT {_COLUMNS} FROM addresses
        WHERE user_id = $1 AND id > $2
        ORDER BY id
        LIMIT $3
        """,
        user_id,
        after_id or 0,
        limit,
    )
    return [a for a in map(_address, rows) if a is not None]


async def lock_owner_and_count(conn: Executor, user_id: int) -> int:
    """Row-lock the user (so concurrent creates serialize) and count their addresses."""
    # Two statements: under read committed the count's snapshot must be taken after
    # the lock is granted, or it would miss the address the lock holder just added.
    await conn.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", user_id)
    count: int = await conn.fetchval("SELECT count(*) FROM addresses WHERE user_id = $1", user_id)
    return count


async def create_address(
    conn: Executor,
    user_id: int,
    *,
    type: str,
    state: str,
    city: str | None,
    full_address: str,
    pincode: str | None,
) -> AddressRow:
    row = await conn.fetchrow(
        f"""
        INSERT INTO addresses (user_id, type, state, city, full_address, pincode)
        VALUES ($1, $2, $3, $4, $5, $6)
        RETURNING {_COLUMNS}
        """,
        user_id,
        type,
        state,
        city,
        full_address,
        pincode,
    )
    address = _address(row)
    assert address is not None
    return address


# Columns an update may set: the only names ever put into its SQL text.
UPDATABLE = frozenset({"type", "state", "city", "full_address", "pincode"})


async def update_address(
    db: Executor, user_id: int, address_id: int, changes: dict[str, Any]
) -> AddressRow | None:
    """Apply ``changes`` (column → value) to the user's address; None if not theirs."""
    unknown = set(changes) - UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    columns = sorted(changes)
    assignments = "".join(f", {c} = ${i}" for i, c in enumerate(columns, start=3))
    row = await db.fetchrow(
        f"""
        UPDATE addresses SET updated_at = now(){assignments}
        WHERE id = $1 AND user_id = $2
        RETURNING {_COLUMNS}
        """,
        address_id,
        user_id,
        *(changes[c] for c in columns),
    )
    return _address(row)


async def delete_address(db: Executor, user_id: int, address_id: int) -> bool:
    """Delete the user's address; False if they have none with that id."""
    status = await db.execute(
        "DELETE FROM addresses WHERE id = $1 AND user_id = $2", address_id, user_id
    )
    return status == "DELETE 1"
