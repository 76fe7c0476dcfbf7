"""Login codes' state in PostgreSQL (storage/accounts.py) under concurrency."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from storage import accounts
from storage.database import Database


async def test_a_code_state_pruned_meanwhile_is_still_locked_and_returned(db: Database) -> None:
    """The housekeeping prune deletes states with nothing to enforce, such as one a
    refused send just restored: a request locking the same phone at that moment must
    still get a state (a fresh one), never nothing (which was an internal error)."""
    phone, role = "+919876543210", "customer"
    later = datetime(2100, 1, 1, tzinfo=UTC)  # every empty state is prunable by then

    async def lock() -> accounts.OtpRow:
        async with db.transaction() as conn:
            return await accounts.lock_otp(conn, phone, role)

    for _ in range(300):
        state, _ = await asyncio.gather(lock(), accounts.prune_otp_challenges(db, later))
        assert state == accounts.OtpRow(None, None, 0, None, None)
