"""The rules of payments, free of I/O (tested with plain calls): what a gateway's answer
does to an order, what a payment buys, and order ids.

.. code-block:: text

               pending             success (amounts match)
    created ────────────► pending ─────────────────────────► paid
      │  │                  │ ▲                                ▲ │ refund (admin)
      │  └─ failure ─► failed ─┼─ success (late) ─────────────┤ ▼
      │                 ▲   │  │                               │ refund_pending
      │                 └───┘ failure                          │ │ refund done
      └─ no final answer for payments.give_up_after ► expired ─┘ ▼ (gateway)
                                                                 refunded
    an answer whose order, merchant, amount or currency differs from what was asked
    ─► review (never fulfilled; a security event; an admin decides)

The gateway's Transaction Status answer is the only authority: a callback or webhook
only makes the server ask. A success is final (a later failure changes nothing); a
success after a failure or an expiry is still fulfilled, never dropped.
"""

from __future__ import annotations

import calendar
import enum
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo


class Status(enum.StrEnum):
    CREATED = "created"  # the gateway gave a txnToken; the payer has not paid yet
    PENDING = "pending"  # the gateway says the payment is not final yet
    PAID = "paid"  # fulfilled: its period is bought
    FAILED = "failed"
    EXPIRED = "expired"  # never final at the gateway within payments.give_up_after
    REVIEW = "review"  # an answer did not match the order: an admin looks at it
    REFUND_PENDING = "refund_pending"
    REFUNDED = "refunded"


#: The gateway is asked again about these (the reconciler).
OPEN = frozenset({Status.CREATED, Status.PENDING})

Outcome = Literal["success", "failure", "pending"]


@dataclass(frozen=True, slots=True)
class Expected:
    """What the server asked the gateway for at initiate."""

    order_id: str
    amount_paise: int
    currency: str
    merchant_id: str


@dataclass(frozen=True, slots=True)
class Observed:
    """What a Transaction Status answer says (None: the answer did not say)."""

    outcome: Outcome
    order_id: str
    amount_paise: int | None
    currency: str | None
    merchant_id: str | None


@dataclass(frozen=True, slots=True)
class Settlement:
    after: Status  # the new status (the same when nothing changes)
    fulfil: bool  # buy the period now (only on the move to paid)
    mismatch: str | None  # what differs from the order ("amount" ...): a security event


def mismatch(expected: Expected, observed: Observed) -> str | None:
    """The first of order, merchant, amount, currency that differs, or None. A success
    that does not say its amount is a mismatch too: nothing is bought unverified."""
    if observed.order_id != expected.order_id:
        return "order"
    if observed.merchant_id is not None and observed.merchant_id != expected.merchant_id:
        return "merchant"
    if observed.amount_paise is None:
        return "amount" if observed.outcome == "success" else None
    if observed.amount_paise != expected.amount_paise:
        return "amount"
    if observed.currency is not None and observed.currency != expected.currency:
        return "currency"
    return None


def settle(current: Status, expected: Expected, observed: Observed) -> Settlement:
    """What an authoritative answer about the order does to it."""
    differs = mismatch(expected, observed)
    if differs is not None:
        if current in (Status.PAID, Status.REFUND_PENDING, Status.REFUNDED):
            return Settlement(current, False, differs)  # bought already: only flagged
        return Settlement(Status.REVIEW, False, differs)
    if observed.outcome == "success":
        if current in (Status.CREATED, Status.PENDING, Status.FAILED, Status.EXPIRED):
            return Settlement(Status.PAID, True, None)
        return Settlement(current, False, None)  # paid already, refunds, review
    if observed.outcome == "failure":
        if current in (Status.CREATED, Status.PENDING, Status.EXPIRED):
            return Settlement(Status.FAILED, False, None)
        return Settlement(current, False, None)
    if current is Status.CREATED:
        return Settlement(Status.PENDING, False, None)
    return Settlement(current, False, None)


# --- What a payment buys ----------------------------------------------------------------

# Months per billing cycle of the catalog (services.billing_cycle); None: no end.
CYCLE_MONTHS: dict[str, int | None] = {
    "monthly": 1,
    "quarterly": 3,
    "yearly": 12,
    "biennial": 24,
    "triennial": 36,
    "one_time": None,
    "lifetime": None,
}


@dataclass(frozen=True, slots=True)
class Period:
    starts_at: datetime
    ends_at: datetime | None  # None: no end


def add_months(moment: datetime, months: int, zone: ZoneInfo) -> datetime:
    """``moment`` plus whole calendar months, on the business calendar: 31 Jan + 1 month
    is 28 (29) Feb, at the same local time of day."""
    local = moment.astimezone(zone)
    month = local.month - 1 + months
    year = local.year + month // 12
    month = month % 12 + 1
    day = min(local.day, calendar.monthrange(year, month)[1])
    return local.replace(year=year, month=month, day=day).astimezone(moment.tzinfo)


def extension(now: datetime, current_end: datetime | None) -> datetime:
    """Where a new period starts: at the current end while it is still ahead (paying
    again extends), else now."""
    return current_end if current_end is not None and current_end > now else now


def listing_period(
    now: datetime,
    current_end: datetime | None,
    *,
    cycle: str,
    interval: int,
    zone: ZoneInfo,
) -> Period:
    """The period a listing fee buys: ``interval`` × ``cycle`` from where it starts."""
    start = extension(now, current_end)
    months = CYCLE_MONTHS[cycle]
    if months is None:
        return Period(start, None)
    return Period(start, add_months(start, months * interval, zone))


def labour_period(now: datetime, current_end: datetime | None, days: int) -> Period:
    start = extension(now, current_end)
    return Period(start, start + timedelta(days=days))


# --- Order ids -------------------------------------------------------------------------

_ALPHABET = "ABCDEFGHJKMNPQRSTVWXYZ23456789"  # no look-alikes (I, L, O, U, 0, 1)


def order_id(now: datetime, product: Literal["listing", "labour_access"]) -> str:
    """A fresh order id: ``BX`` + the UTC date + the product's letter + 16 random
    characters (80 bits): 27 characters, within Paytm's 50."""
    letter = "L" if product == "listing" else "A"
    suffix = "".join(secrets.choice(_ALPHABET) for _ in range(16))
    return f"BX{now:%Y%m%d}{letter}{suffix}"
