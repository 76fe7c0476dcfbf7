"""A provider's earnings (method ``earnings.get``, event ``earnings.updated``).

The sum of the charges of the provider's bookings, in paise: completed this month and
today (by completion time, on the calendar of ``database.timezone``, Asia/Kolkata:
the original used the server's local zone and UTC dates, off by a day near midnight),
and ``pending``, the open work (pending, accepted, in progress). Customers pay the
provider directly; the platform takes no commission (reference 8.1).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from kernel.clock import Clock
from kernel.events import EventSpec
from kernel.rpc.registry import Caller, Empty, MethodRegistry, Result
from storage import bookings
from storage.database import Database

ROLES = frozenset({"provider"})


class Earnings(Result):
    """Also the data of ``earnings.updated``."""

    this_month_paise: int = Field(description="completed since the 1st of this month")
    today_paise: int = Field(description="completed since midnight")
    pending_paise: int = Field(description="pending, accepted and in-progress bookings")
    timezone: str = Field(description="the calendar of month and day (Asia/Kolkata)")
    as_of: datetime


EARNINGS_UPDATED = EventSpec(
    "earnings.updated",
    Earnings,
    "a booking change moved the provider's earnings (the new figures)",
)


def earnings(row: bookings.EarningsRow, timezone: str, now: datetime) -> Earnings:
    return Earnings(
        this_month_paise=row.this_month_paise,
        today_paise=row.today_paise,
        pending_paise=row.pending_paise,
        timezone=timezone,
        as_of=now,
    )


class EarningsService:
    def __init__(self, db: Database, clock: Clock, timezone: str) -> None:
        self._db = db
        self._clock = clock
        self._timezone = timezone

    def register(self, registry: MethodRegistry) -> None:
        registry.add("earnings.get", self.get, params=Empty, result=Earnings, roles=ROLES)

    async def get(self, caller: Caller, params: Empty) -> Earnings:
        """The caller's earnings: this month, today, pending (integer paise)."""
        now = self._clock.now()
        row = await bookings.earnings(self._db, caller.require_user(), now, self._timezone)
        return earnings(row, self._timezone, now)
