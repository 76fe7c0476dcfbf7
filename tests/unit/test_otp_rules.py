"""OTP rules: codes, digests, when to send, and what a presented code does. No I/O."""

from __future__ import annotations

import hashlib
import hmac
import random
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from api.auth.otp import (
    Accepted,
    Locked,
    OtpPolicy,
    OtpState,
    Rejected,
    SendAllowed,
    SendRefused,
    code_digest,
    decide_send,
    decide_verify,
    digests_equal,
    generate_code,
    issue,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TICK = timedelta(microseconds=1)
KEY = b"k" * 32
PHONE = "+919876543210"
ROLE = "customer"
POLICY = OtpPolicy()


def digest(code: str, phone: str = PHONE, role: str = ROLE) -> bytes:
    return code_digest(KEY, phone, role, code)


RIGHT = digest("123456")
WRONG = digest("654321")


def live(attempts: int = 0, at: datetime = NOW) -> OtpState:
    """A code "123456" sent at ``at`` with ``attempts`` wrong guesses so far."""
    return replace(issue(OtpState.empty(), RIGHT, at, POLICY), attempts=attempts)


# --- Policy and state ------------------------------------------------------------------


def test_policy_defaults() -> None:
    assert POLICY == OtpPolicy(
        code_length=6,
        ttl=timedelta(minutes=5),
        max_attempts=5,
        lock_duration=timedelta(minutes=15),
        resend_cooldown=timedelta(seconds=30),
        max_sends_per_phone=5,
        phone_window=timedelta(hours=1),
        max_sends_per_ip=20,
        ip_window=timedelta(hours=1),
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"code_length": 3},
        {"code_length": 13},
        {"max_attempts": 0},
        {"max_sends_per_phone": 0},
        {"max_sends_per_ip": 0},
        {"ttl": timedelta(0)},
        {"lock_duration": timedelta(seconds=-1)},
        {"phone_window": timedelta(0)},
        {"ip_window": timedelta(0)},
        {"resend_cooldown": timedelta(seconds=-1)},
    ],
)
def test_policy_refuses_unsatisfiable_limits(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        OtpPolicy(**changes)  # type: ignore[arg-type]


def test_policy_allows_no_cooldown() -> None:
    assert OtpPolicy(resend_cooldown=timedelta(0)).resend_cooldown == timedelta(0)


def test_empty_state() -> None:
    assert OtpState.empty() == OtpState(None, None, 0, None, None)


def test_state_needs_digest_and_expiry_together() -> None:
    with pytest.raises(ValueError):
        OtpState(RIGHT, None, 0, None, None)
    with pytest.raises(ValueError):
        OtpState(None, NOW, 0, None, None)
    with pytest.raises(ValueError):
        OtpState(None, None, -1, None, None)


# --- Codes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "drawn", "code"),
    [
        (6, 0, "000000"),
        (6, 42, "000042"),
        (6, 999_999, "999999"),
        (4, 7, "0007"),
        (8, 123, "00000123"),
    ],
)
def test_code_is_zero_padded(length: int, drawn: int, code: str) -> None:
    assert generate_code(length, randbelow=lambda _: drawn) == code


def test_code_is_one_draw_over_the_whole_code_space() -> None:
    bounds: list[int] = []

    def randbelow(n: int) -> int:
        bounds.append(n)
        return n - 1

    assert generate_code(6, randbelow) == "999999"
    assert bounds == [10**6]


def test_every_code_is_reachable_exactly_once() -> None:
    # generate_code is a bijection from randbelow's range onto the codes, so it is
    # exactly as uniform as randbelow.
    draws = iter(range(1000))
    codes = [generate_code(3, randbelow=lambda _: next(draws)) for _ in range(1000)]
    assert sorted(codes) == [f"{i:03d}" for i in range(1000)]


def test_digits_are_spread_evenly_with_a_seeded_generator() -> None:
    rng = random.Random(20260301)
    codes = [generate_code(6, randbelow=rng.randrange) for _ in range(20_000)]
    for position in range(6):
        counts = Counter(code[position] for code in codes)
        expected = len(codes) / 10
        chi_square = sum((counts[d] - expected) ** 2 / expected for d in "0123456789")
        assert chi_square < 27.88  # 9 degrees of freedom, p = 0.001


def test_default_randomness_yields_ascii_digit_codes() -> None:
    codes = {generate_code() for _ in range(200)}
    assert all(len(code) == 6 and code.isascii() and code.isdigit() for code in codes)
    assert len(codes) > 190  # collisions among 200 draws from 10**6 are rare


@pytest.mark.parametrize("drawn", [-1, 10**6])
def test_out_of_range_randomness_is_refused(drawn: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        generate_code(6, randbelow=lambda _: drawn)


def test_code_length_must_be_positive() -> None:
    with pytest.raises(ValueError):
        generate_code(0)


# --- Digests ---------------------------------------------------------------------------


def test_digest_follows_the_documented_encoding() -> None:
    message = b"buildxpert-rtc/otp/v1"
    for field in (PHONE, ROLE, "123456"):
        message += len(field.encode()).to_bytes(4, "big") + field.encode()
    assert RIGHT == hmac.new(KEY, message, hashlib.sha256).digest()
    assert len(RIGHT) == 32


@pytest.mark.parametrize(
    "other",
    [
        code_digest(b"K" * 32, PHONE, ROLE, "123456"),
        code_digest(KEY, "+919876543211", ROLE, "123456"),
        code_digest(KEY, PHONE, "provider", "123456"),
        code_digest(KEY, PHONE, ROLE, "123457"),
    ],
    ids=["key", "phone", "role", "code"],
)
def test_digest_depends_on_every_field(other: bytes) -> None:
    assert other != RIGHT


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("+9198", "76543210customer", "1"), ("+919876543210", "customer", "1")),
        ((PHONE, "customer1", "23456"), (PHONE, "customer", "123456")),
        (("", PHONE, "1"), (PHONE, "", "1")),
    ],
)
def test_digest_encoding_is_unambiguous(
    first: tuple[str, str, str], second: tuple[str, str, str]
) -> None:
    assert "".join(first) == "".join(second)
    assert code_digest(KEY, *first) != code_digest(KEY, *second)


def test_digest_needs_a_key() -> None:
    with pytest.raises(ValueError):
        code_digest(b"", PHONE, ROLE, "123456")


def test_digests_equal() -> None:
    assert digests_equal(RIGHT, digest("123456"))
    assert not digests_equal(RIGHT, WRONG)
    assert not digests_equal(RIGHT, RIGHT[:-1])


# --- Sending ---------------------------------------------------------------------------


def send(
    state: OtpState,
    at: datetime = NOW,
    phone: int = 0,
    ip: int = 0,
    oldest_phone_send_at: datetime | None = None,
    oldest_ip_send_at: datetime | None = None,
) -> SendAllowed | SendRefused:
    return decide_send(
        state,
        at,
        POLICY,
        sends_for_phone=phone,
        sends_for_ip=ip,
        oldest_phone_send_at=oldest_phone_send_at,
        oldest_ip_send_at=oldest_ip_send_at,
    )


def test_first_send_is_allowed() -> None:
    assert send(OtpState.empty()) == SendAllowed()


def test_lock_refuses_until_it_ends() -> None:
    state = replace(OtpState.empty(), locked_until=NOW + timedelta(minutes=10))
    assert send(state) == SendRefused("locked", timedelta(minutes=10))
    assert send(state, at=NOW + timedelta(minutes=10) - TICK) == SendRefused("locked", TICK)
    assert send(state, at=NOW + timedelta(minutes=10)) == SendAllowed()


def test_resend_cooldown_boundary() -> None:
    state = live(at=NOW)
    assert send(state, at=NOW) == SendRefused("cooldown", timedelta(seconds=30))
    assert send(state, at=NOW + timedelta(seconds=10)) == SendRefused(
        "cooldown", timedelta(seconds=20)
    )
    assert send(state, at=NOW + timedelta(seconds=30) - TICK) == SendRefused("cooldown", TICK)
    assert send(state, at=NOW + timedelta(seconds=30)) == SendAllowed()


def test_phone_cap_boundary() -> None:
    assert send(OtpState.empty(), phone=4) == SendAllowed()
    assert send(OtpState.empty(), phone=5) == SendRefused("phone_cap", timedelta(hours=1))


def test_ip_cap_boundary() -> None:
    assert send(OtpState.empty(), ip=19) == SendAllowed()
    assert send(OtpState.empty(), ip=20) == SendRefused("ip_cap", timedelta(hours=1))


def test_cap_wait_is_exact_when_the_oldest_send_is_known() -> None:
    oldest = NOW - timedelta(minutes=50)
    assert send(OtpState.empty(), phone=5, oldest_phone_send_at=oldest) == SendRefused(
        "phone_cap", timedelta(minutes=10)
    )
    assert send(OtpState.empty(), ip=20, oldest_ip_send_at=oldest) == SendRefused(
        "ip_cap", timedelta(minutes=10)
    )


def test_cap_wait_falls_back_to_the_window_above_the_cap() -> None:
    # With 6 sends against a cap of 5, the oldest leaving is not enough.
    oldest = NOW - timedelta(minutes=50)
    assert send(OtpState.empty(), phone=6, oldest_phone_send_at=oldest) == SendRefused(
        "phone_cap", timedelta(hours=1)
    )


def test_cap_wait_is_never_negative() -> None:
    stale = NOW - timedelta(hours=2)
    refused = send(OtpState.empty(), phone=5, oldest_phone_send_at=stale)
    assert refused == SendRefused("phone_cap", timedelta(0))


def test_the_longest_wait_is_reported() -> None:
    cooling = live(at=NOW - timedelta(seconds=10))
    assert send(cooling) == SendRefused("cooldown", timedelta(seconds=20))
    assert send(cooling, phone=5) == SendRefused("phone_cap", timedelta(hours=1))
    short_cap = send(cooling, phone=5, oldest_phone_send_at=NOW - timedelta(hours=1) + TICK)
    assert short_cap == SendRefused("cooldown", timedelta(seconds=20))
    locked = replace(cooling, locked_until=NOW + timedelta(minutes=15))
    assert send(locked, ip=20, oldest_ip_send_at=NOW - timedelta(minutes=55)) == SendRefused(
        "locked", timedelta(minutes=15)
    )


def test_equal_waits_report_in_precedence_order() -> None:
    assert send(OtpState.empty(), phone=5, ip=20) == SendRefused("phone_cap", timedelta(hours=1))
    locked = replace(OtpState.empty(), locked_until=NOW + timedelta(hours=1))
    assert send(locked, phone=5, ip=20) == SendRefused("locked", timedelta(hours=1))


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        send(OtpState.empty(), at=NOW.replace(tzinfo=None))


# --- Issuing ---------------------------------------------------------------------------


def test_issue_replaces_the_previous_code_and_resets_attempts() -> None:
    later = NOW + timedelta(minutes=2)
    new_digest = digest("000001")
    state = issue(live(attempts=3), new_digest, later, POLICY)
    assert state == OtpState(
        code_digest=new_digest,
        expires_at=later + timedelta(minutes=5),
        attempts=0,
        locked_until=None,
        last_sent_at=later,
    )
    assert isinstance(decide_verify(state, RIGHT, later, POLICY), Rejected)


def test_issue_drops_an_expired_lock_but_keeps_an_active_one() -> None:
    expired = replace(OtpState.empty(), locked_until=NOW)
    assert issue(expired, RIGHT, NOW, POLICY).locked_until is None
    active = replace(OtpState.empty(), locked_until=NOW + TICK)
    assert issue(active, RIGHT, NOW, POLICY).locked_until == NOW + TICK


# --- Verifying -------------------------------------------------------------------------


def test_right_code_is_accepted_and_consumed() -> None:
    state = live(attempts=2)
    outcome = decide_verify(state, RIGHT, NOW + timedelta(minutes=1), POLICY)
    assert outcome == Accepted(replace(state, code_digest=None, expires_at=None, attempts=0))
    # The consumed state cannot be used again (replay).
    replay = decide_verify(outcome.new_state, RIGHT, NOW + timedelta(minutes=1), POLICY)
    assert replay == Rejected(outcome.new_state, "no_code", attempts_left=0)


def test_wrong_code_counts_an_attempt_and_keeps_the_code() -> None:
    outcome = decide_verify(live(), WRONG, NOW, POLICY)
    assert outcome == Rejected(live(attempts=1), "wrong_code", attempts_left=4)


def test_code_for_another_phone_or_role_is_wrong() -> None:
    for presented in (digest("123456", phone="+919876543211"), digest("123456", role="provider")):
        outcome = decide_verify(live(), presented, NOW, POLICY)
        assert isinstance(outcome, Rejected) and outcome.reason == "wrong_code"


def test_fourth_wrong_try_is_rejected_and_fifth_locks() -> None:
    fourth = decide_verify(live(attempts=3), WRONG, NOW, POLICY)
    assert fourth == Rejected(live(attempts=4), "wrong_code", attempts_left=1)
    fifth = decide_verify(live(attempts=4), WRONG, NOW, POLICY)
    assert fifth == Locked(
        OtpState(
            code_digest=None,
            expires_at=None,
            attempts=5,
            locked_until=NOW + timedelta(minutes=15),
            last_sent_at=NOW,
        ),
        retry_after=timedelta(minutes=15),
    )


def test_right_code_after_four_wrong_tries_is_accepted() -> None:
    assert isinstance(decide_verify(live(attempts=4), RIGHT, NOW, POLICY), Accepted)


def test_a_single_attempt_policy_locks_on_the_first_wrong_try() -> None:
    policy = OtpPolicy(max_attempts=1)
    assert isinstance(decide_verify(live(), WRONG, NOW, policy), Locked)


def test_lock_answers_locked_even_for_the_right_code() -> None:
    lock_end = NOW + timedelta(minutes=15)
    state = replace(live(), locked_until=lock_end)
    at = NOW + timedelta(minutes=1)
    assert decide_verify(state, RIGHT, at, POLICY) == Locked(state, timedelta(minutes=14))
    assert decide_verify(state, RIGHT, lock_end - TICK, POLICY) == Locked(state, TICK)


def test_lock_ends_exactly_at_locked_until() -> None:
    locked = decide_verify(live(attempts=4), WRONG, NOW, POLICY)
    assert isinstance(locked, Locked)
    lock_end = NOW + timedelta(minutes=15)
    # The lock cleared the code, so the next answer is "no code", not "locked".
    after = decide_verify(locked.new_state, RIGHT, lock_end, POLICY)
    assert after == Rejected(locked.new_state, "no_code", attempts_left=0)
    # A new code sent once the lock is over works.
    assert send(locked.new_state, at=lock_end) == SendAllowed()
    fresh = issue(locked.new_state, RIGHT, lock_end, POLICY)
    assert isinstance(decide_verify(fresh, RIGHT, lock_end, POLICY), Accepted)


def test_no_code_is_rejected_without_counting() -> None:
    state = OtpState.empty()
    assert decide_verify(state, RIGHT, NOW, POLICY) == Rejected(state, "no_code", attempts_left=0)


def test_code_expires_exactly_at_expires_at() -> None:
    expiry = NOW + timedelta(minutes=5)
    assert isinstance(decide_verify(live(), RIGHT, expiry - TICK, POLICY), Accepted)
    outcome = decide_verify(live(attempts=2), RIGHT, expiry, POLICY)
    assert outcome == Rejected(
        replace(live(attempts=2), code_digest=None, expires_at=None), "expired", attempts_left=0
    )


def test_wrong_code_after_expiry_does_not_count() -> None:
    outcome = decide_verify(live(attempts=4), WRONG, NOW + timedelta(hours=1), POLICY)
    assert isinstance(outcome, Rejected)
    assert outcome.reason == "expired"
    assert outcome.new_state.attempts == 4
    assert outcome.new_state.locked_until is None


def test_verify_refuses_naive_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide_verify(live(), RIGHT, NOW.replace(tzinfo=None), POLICY)


# --- Properties ------------------------------------------------------------------------

_offsets = st.timedeltas(min_value=timedelta(hours=-2), max_value=timedelta(hours=2))


def _sends_left_in_window(
    count: int, cap: int, window: timedelta, oldest: datetime | None, later: datetime
) -> int:
    """An upper bound on how many of the sends counted at NOW still count at ``later``."""
    if later >= NOW + window:
        return 0
    if oldest is not None and count == cap and later >= oldest + window:
        return count - 1
    return count


@given(
    lock=st.none() | _offsets,
    since_last_send=st.none() | st.timedeltas(timedelta(0), timedelta(minutes=2)),
    phone=st.integers(0, 10),
    ip=st.integers(0, 30),
    oldest_phone_age=st.none() | st.timedeltas(timedelta(0), timedelta(hours=1) - TICK),
    oldest_ip_age=st.none() | st.timedeltas(timedelta(0), timedelta(hours=1) - TICK),
)
def test_a_refused_send_succeeds_after_retry_after_and_not_before(
    lock: timedelta | None,
    since_last_send: timedelta | None,
    phone: int,
    ip: int,
    oldest_phone_age: timedelta | None,
    oldest_ip_age: timedelta | None,
) -> None:
    state = OtpState(
        code_digest=None,
        expires_at=None,
        attempts=0,
        locked_until=None if lock is None else NOW + lock,
        last_sent_at=None if since_last_send is None else NOW - since_last_send,
    )
    oldest_phone = None if oldest_phone_age is None else NOW - oldest_phone_age
    oldest_ip = None if oldest_ip_age is None else NOW - oldest_ip_age
    decision = send(state, NOW, phone, ip, oldest_phone, oldest_ip)
    if isinstance(decision, SendAllowed):
        return
    assert decision.retry_after > timedelta(0)
    later = NOW + decision.retry_after
    phone_later = _sends_left_in_window(phone, 5, timedelta(hours=1), oldest_phone, later)
    ip_later = _sends_left_in_window(ip, 20, timedelta(hours=1), oldest_ip, later)
    # No new sends in between: the wait is long enough for every reason at once ...
    assert send(state, later, phone_later, ip_later) == SendAllowed()
    # ... and the reason reported still holds an instant earlier.
    before = later - TICK
    phone_before = _sends_left_in_window(phone, 5, timedelta(hours=1), oldest_phone, before)
    ip_before = _sends_left_in_window(ip, 20, timedelta(hours=1), oldest_ip, before)
    assert isinstance(send(state, before, phone_before, ip_before), SendRefused)


class WrongGuesses(RuleBasedStateMachine):
    """An attacker who never knows the code asks for codes, waits and guesses at will.

    A small model of the rules says what must happen; the decisions are checked
    against it, and no wrong guess may ever be accepted.
    """

    @initialize(max_attempts=st.integers(1, 6))
    def start(self, max_attempts: int) -> None:
        self.policy = OtpPolicy(max_attempts=max_attempts)
        self.now = NOW
        self.state = OtpState.empty()
        self.expires_at: datetime | None = None  # of the live code, if any
        self.last_sent_at: datetime | None = None
        self.locked_until: datetime | None = None
        self.wrong_on_this_code = 0

    def model_locked(self) -> bool:
        return self.locked_until is not None and self.now < self.locked_until

    @rule(wait=st.timedeltas(timedelta(0), timedelta(minutes=20)))
    def wait(self, wait: timedelta) -> None:
        self.now += wait

    @rule(boundary=st.sampled_from(["lock end", "expiry", "cooldown end"]), early=st.booleans())
    def wait_until(self, boundary: str, early: bool) -> None:
        """Land exactly on one of the model's boundaries, or an instant before it."""
        target = {
            "lock end": self.locked_until,
            "expiry": self.expires_at,
            "cooldown end": self.last_sent_at and self.last_sent_at + timedelta(seconds=30),
        }[boundary]
        if target is not None and target - TICK > self.now:
            self.now = target - TICK if early else target

    @rule()
    def request_code(self) -> None:
        decision = decide_send(self.state, self.now, self.policy, 0, 0)
        cooling = self.last_sent_at is not None and self.now < self.last_sent_at + timedelta(
            seconds=30
        )
        if self.model_locked():
            assert self.locked_until is not None
            assert decision == SendRefused("locked", self.locked_until - self.now)
        elif cooling:
            assert isinstance(decision, SendRefused) and decision.reason == "cooldown"
        else:
            assert decision == SendAllowed()
            self.state = issue(self.state, RIGHT, self.now, self.policy)
            self.expires_at, self.last_sent_at = self.now + timedelta(minutes=5), self.now
            self.wrong_on_this_code = 0

    @rule(code=st.from_regex(r"[0-9]{6}", fullmatch=True).filter(lambda c: c != "123456"))
    def guess(self, code: str) -> None:
        before = self.state
        outcome = decide_verify(before, digest(code), self.now, self.policy)
        assert not isinstance(outcome, Accepted)
        self.state = outcome.new_state
        if self.model_locked():
            assert self.locked_until is not None
            assert outcome == Locked(before, self.locked_until - self.now)
        elif self.expires_at is None:
            assert outcome == Rejected(before, "no_code", attempts_left=0)
        elif self.now >= self.expires_at:
            assert isinstance(outcome, Rejected) and outcome.reason == "expired"
            assert outcome.new_state.code_digest is None
            self.expires_at = None
        else:
            self.wrong_on_this_code += 1
            if self.wrong_on_this_code == self.policy.max_attempts:
                assert outcome == Locked(outcome.new_state, self.policy.lock_duration)
                self.locked_until = self.now + self.policy.lock_duration
                assert outcome.new_state.locked_until == self.locked_until
                self.expires_at = None
            else:
                left = self.policy.max_attempts - self.wrong_on_this_code
                assert outcome == Rejected(outcome.new_state, "wrong_code", left)

    @invariant()
    def attempts_stay_below_the_maximum_while_a_code_lives(self) -> None:
        assert self.state.attempts <= self.policy.max_attempts
        if self.state.code_digest is not None:
            assert self.state.attempts == self.wrong_on_this_code < self.policy.max_attempts


TestWrongGuesses = WrongGuesses.TestCase
TestWrongGuesses.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


@given(
    codes=st.lists(st.just("123456") | st.from_regex(r"[0-9]{6}", fullmatch=True), max_size=12),
    step=st.timedeltas(timedelta(0), timedelta(seconds=90)),
)
def test_only_the_right_code_is_ever_accepted(codes: list[str], step: timedelta) -> None:
    state, now = live(), NOW
    for code in codes:
        outcome = decide_verify(state, digest(code), now, POLICY)
        if isinstance(outcome, Accepted):
            assert code == "123456"
        state, now = outcome.new_state, now + step
