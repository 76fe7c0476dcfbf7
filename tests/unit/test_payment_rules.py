"""The rules of payments, with plain calls: every status × answer, periods, order ids."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from api.payments import rules
from api.payments.rules import Expected, Observed, Settlement, Status

IST = ZoneInfo("Asia/Kolkata")
EXPECTED = Expected("BX1", 9900, "INR", "MID1")


def answer(outcome: rules.Outcome, **changes: object) -> Observed:
    fields: dict[str, object] = {
        "outcome": outcome,
        "order_id": "BX1",
        "amount_paise": 9900,
        "currency": "INR",
        "merchant_id": "MID1",
        **changes,
    }
    return Observed(**fields)  # type: ignore[arg-type]


# Every status × every outcome of a matching answer: (after, fulfil).
MATRIX = {
    (Status.CREATED, "success"): (Status.PAID, True),
    (Status.CREATED, "failure"): (Status.FAILED, False),
    (Status.CREATED, "pending"): (Status.PENDING, False),
    (Status.PENDING, "success"): (Status.PAID, True),
    (Status.PENDING, "failure"): (Status.FAILED, False),
    (Status.PENDING, "pending"): (Status.PENDING, False),
    # A success after a failure or an expiry is fulfilled, never dropped.
    (Status.FAILED, "success"): (Status.PAID, True),
    (Status.FAILED, "failure"): (Status.FAILED, False),
    (Status.FAILED, "pending"): (Status.FAILED, False),
    (Status.EXPIRED, "success"): (Status.PAID, True),
    (Status.EXPIRED, "failure"): (Status.FAILED, False),
    (Status.EXPIRED, "pending"): (Status.EXPIRED, False),
    # A success is final: nothing later takes it back or fulfils it twice.
    (Status.PAID, "success"): (Status.PAID, False),
    (Status.PAID, "failure"): (Status.PAID, False),
    (Status.PAID, "pending"): (Status.PAID, False),
    (Status.REVIEW, "success"): (Status.REVIEW, False),
    (Status.REVIEW, "failure"): (Status.REVIEW, False),
    (Status.REVIEW, "pending"): (Status.REVIEW, False),
    (Status.REFUND_PENDING, "success"): (Status.REFUND_PENDING, False),
    (Status.REFUND_PENDING, "failure"): (Status.REFUND_PENDING, False),
    (Status.REFUND_PENDING, "pending"): (Status.REFUND_PENDING, False),
    (Status.REFUNDED, "success"): (Status.REFUNDED, False),
    (Status.REFUNDED, "failure"): (Status.REFUNDED, False),
    (Status.REFUNDED, "pending"): (Status.REFUNDED, False),
}


def test_the_matrix_covers_every_status_and_outcome() -> None:
    assert set(MATRIX) == {(s, o) for s in Status for o in ("success", "failure", "pending")}


@pytest.mark.parametrize(("current", "outcome"), sorted(MATRIX))
def test_a_matching_answer(current: Status, outcome: rules.Outcome) -> None:
    after, fulfil = MATRIX[(current, outcome)]
    assert rules.settle(current, EXPECTED, answer(outcome)) == Settlement(after, fulfil, None)


@pytest.mark.parametrize(
    ("change", "mismatch"),
    [
        ({"amount_paise": 100}, "amount"),
        ({"amount_paise": None}, "amount"),  # a success must say what was paid
        ({"merchant_id": "OTHER"}, "merchant"),
        ({"order_id": "BX2"}, "order"),
        ({"currency": "USD"}, "currency"),
    ],
)
@pytest.mark.parametrize("current", [Status.CREATED, Status.PENDING, Status.FAILED])
def test_a_success_that_does_not_match_goes_to_review_never_paid(
    current: Status, change: dict[str, object], mismatch: str
) -> None:
    settled = rules.settle(current, EXPECTED, answer("success", **change))
    assert settled == Settlement(Status.REVIEW, False, mismatch)


def test_a_mismatch_on_a_paid_order_is_flagged_not_undone() -> None:
    settled = rules.settle(Status.PAID, EXPECTED, answer("success", amount_paise=1))
    assert settled == Settlement(Status.PAID, False, "amount")


def test_a_failure_that_does_not_say_its_amount_is_no_mismatch() -> None:
    settled = rules.settle(Status.CREATED, EXPECTED, answer("failure", amount_paise=None))
    assert settled == Settlement(Status.FAILED, False, None)


def test_missing_merchant_or_currency_are_not_mismatches() -> None:
    settled = rules.settle(
        Status.CREATED, EXPECTED, answer("success", merchant_id=None, currency=None)
    )
    assert settled == Settlement(Status.PAID, True, None)


# --- Periods -----------------------------------------------------------------------------


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=IST).astimezone(UTC)


@pytest.mark.parametrize(
    ("start", "months", "end"),
    [
        ("2026-01-15 10:00", 1, "2026-02-15 10:00"),
        ("2026-01-31 10:00", 1, "2026-02-28 10:00"),  # the month's last day
        ("2028-01-31 10:00", 1, "2028-02-29 10:00"),  # a leap year
        ("2026-11-30 23:30", 3, "2027-02-28 23:30"),  # across a year, local time kept
        ("2026-12-07 00:15", 12, "2027-12-07 00:15"),
        ("2026-03-31 09:00", 24, "2028-03-31 09:00"),
    ],
)
def test_months_are_calendar_months_on_the_business_calendar(
    start: str, months: int, end: str
) -> None:
    assert rules.add_months(at(start), months, IST) == at(end)


def test_a_listing_fee_buys_interval_times_cycle_from_now() -> None:
    now = at("2026-12-07 10:00")
    period = rules.listing_period(now, None, cycle="yearly", interval=1, zone=IST)
    assert period == rules.Period(now, at("2027-12-07 10:00"))
    period = rules.listing_period(now, None, cycle="quarterly", interval=2, zone=IST)
    assert period.ends_at == at("2027-06-07 10:00")


def test_paying_again_while_active_extends_from_the_current_end() -> None:
    now = at("2026-12-07 10:00")
    current = at("2027-03-01 08:00")
    period = rules.listing_period(now, current, cycle="monthly", interval=1, zone=IST)
    assert period == rules.Period(current, at("2027-04-01 08:00"))


def test_a_lapsed_end_restarts_from_now() -> None:
    now = at("2026-12-07 10:00")
    period = rules.listing_period(
        now, at("2026-11-01 00:00"), cycle="monthly", interval=1, zone=IST
    )
    assert period.starts_at == now


@pytest.mark.parametrize("cycle", ["one_time", "lifetime"])
def test_a_lifetime_listing_has_no_end(cycle: str) -> None:
    now = at("2026-12-07 10:00")
    assert rules.listing_period(now, None, cycle=cycle, interval=1, zone=IST).ends_at is None


def test_labour_access_is_days_extended_from_its_end() -> None:
    now = at("2026-12-07 10:00")
    assert rules.labour_period(now, None, 7) == rules.Period(now, now + timedelta(days=7))
    current = now + timedelta(days=2)
    assert rules.labour_period(now, current, 7).ends_at == current + timedelta(days=7)


def test_order_ids_are_fresh_and_fit_the_gateway() -> None:
    now = datetime(2026, 12, 7, tzinfo=UTC)
    ids = {rules.order_id(now, "listing") for _ in range(1000)}
    assert len(ids) == 1000
    for order_id in ids:
        assert re.fullmatch(r"BX20261207L[A-Z2-9]{16}", order_id)
        assert len(order_id) <= 50
    assert rules.order_id(now, "labour_access")[10] == "A"
