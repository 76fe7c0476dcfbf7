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
    GuessRefusalReason,
    GuessRefused,
    OtpPolicy,
    OtpState,
    Rejected,
    SendAllowed,
    SendDecision,
    SendRefusalReason,
    SendRefused,
    VerifyOutcome,
    Window,
    code_digest,
    decide_send,
    decide_verify,
    digests_equal,
    generate_code,
    issue,
    prefix_of,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TICK = timedelta(microseconds=1)
HOUR = timedelta(hours=1)
KEY = b"k" * 32
PHONE = "+919876543210"
ROLE = "customer"
POLICY = OtpPolicy()
OWNER_IP = "192.0.2.7"
OTHER_IP = "198.51.100.9"

# Property tests are reproducible run to run (the profile of tests/conftest.py keeps no
# example database).
DETERMINISTIC = settings(derandomize=True, deadline=None)


def digest(code: str, phone: str = PHONE, role: str = ROLE) -> bytes:
    return code_digest(KEY, phone, role, code)


RIGHT = digest("123456")
WRONG = digest("654321")


def live(attempts: int = 0, at: datetime = NOW, ip: str | None = OWNER_IP) -> OtpState:
    """A code "123456" asked for from ``ip`` at ``at``, with ``attempts`` wrong guesses."""
    return replace(issue(OtpState.empty(), RIGHT, at, POLICY, ip=ip), attempts=attempts)


def send(
    state: OtpState,
    at: datetime = NOW,
    *,
    phone: Window = Window.EMPTY,
    ip: Window = Window.EMPTY,
    prefix: Window = Window.EMPTY,
    policy: OtpPolicy = POLICY,
) -> SendDecision:
    return decide_send(state, at, policy, phone=phone, ip=ip, prefix=prefix)


def verify(
    state: OtpState,
    presented: bytes = RIGHT,
    at: datetime = NOW,
    *,
    ip: str | None = OWNER_IP,
    phone_guesses: Window = Window.EMPTY,
    ip_guesses: Window = Window.EMPTY,
    policy: OtpPolicy = POLICY,
) -> VerifyOutcome:
    return decide_verify(
        state,
        presented,
        at,
        policy,
        ip=ip,
        phone_guesses=phone_guesses,
        ip_guesses=ip_guesses,
    )


# --- Policy, windows and state ---------------------------------------------------------


def test_policy_defaults() -> None:
    assert POLICY == OtpPolicy(
        code_length=6,
        ttl=timedelta(minutes=5),
        max_attempts=5,
        max_guesses_per_phone=10,
        max_guesses_per_ip=30,
        guess_window=timedelta(hours=1),
        resend_cooldown=timedelta(seconds=30),
        max_sends_per_phone=5,
        phone_window=timedelta(hours=1),
        max_sends_per_ip=20,
        ip_window=timedelta(hours=1),
        max_sends_per_prefix=50,
        prefix_window=timedelta(hours=1),
        prefix_digits=8,
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"code_length": 3},
        {"code_length": 13},
        {"max_attempts": 0},
        {"max_guesses_per_phone": 0},
        {"max_guesses_per_ip": 0},
        {"max_sends_per_phone": 0},
        {"max_sends_per_ip": 0},
        {"max_sends_per_prefix": 0},
        {"ttl": timedelta(0)},
        {"guess_window": timedelta(seconds=-1)},
        {"phone_window": timedelta(0)},
        {"ip_window": timedelta(0)},
        {"prefix_window": timedelta(0)},
        {"resend_cooldown": timedelta(seconds=-1)},
        {"prefix_digits": 3},
        {"prefix_digits": 16},
    ],
)
def test_policy_refuses_unsatisfiable_limits(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        OtpPolicy(**changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes",
    [
        {"resend_cooldown": timedelta(0)},
        {"code_length": 4},
        {"code_length": 12},
        {"prefix_digits": 4},
        {"prefix_digits": 15},
        {"max_attempts": 1, "max_guesses_per_phone": 1, "max_guesses_per_ip": 1},
    ],
)
def test_policy_allows_the_edges(changes: dict[str, object]) -> None:
    policy = OtpPolicy(**changes)  # type: ignore[arg-type]
    assert all(getattr(policy, name) == value for name, value in changes.items())


def test_empty_window() -> None:
    assert Window.EMPTY == Window(0) == Window(0, None)


def test_window_refuses_impossible_counts() -> None:
    with pytest.raises(ValueError):
        Window(-1)
    with pytest.raises(ValueError):
        Window(0, NOW)  # no event, so no oldest one


def test_empty_state() -> None:
    assert OtpState.empty() == OtpState(None, None, 0, None, None)


def test_state_needs_digest_and_expiry_together() -> None:
    with pytest.raises(ValueError):
        OtpState(RIGHT, None, 0, None, None)
    with pytest.raises(ValueError):
        OtpState(None, NOW, 0, None, None)
    with pytest.raises(ValueError):
        OtpState(None, None, -1, None, None)


def test_state_has_an_asking_address_only_with_a_code() -> None:
    with pytest.raises(ValueError):
        OtpState(None, None, 0, NOW, OWNER_IP)
    assert OtpState(RIGHT, NOW, 0, NOW, OWNER_IP).sent_to_ip == OWNER_IP


# --- Prefixes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "digits", "prefix"),
    [
        ("+919876543210", 8, "91987654"),
        ("+14155550123", 8, "14155550"),
        ("+919876543210", 4, "9198"),
        ("+919876543210", 15, "919876543210"),
        ("+4412", 8, "4412"),
        ("+123456789012345", 15, "123456789012345"),
    ],
)
def test_prefix_is_the_leading_digits_with_the_country_code(
    phone: str, digits: int, prefix: str
) -> None:
    assert prefix_of(phone, OtpPolicy(prefix_digits=digits)) == prefix


@pytest.mark.parametrize(
    "phone",
    ["919876543210", "", "+", "+91 98765 43210", "+91-9876543210", "+1234567890123456", "+٩١٩٨"],
)
def test_prefix_needs_an_e164_number(phone: str) -> None:
    with pytest.raises(ValueError, match="E.164"):
        prefix_of(phone, POLICY)


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

# Each send cap: its reason and its maximum by default.
CAPS = [("phone_cap", 5), ("ip_cap", 20), ("prefix_cap", 50)]


def send_counting(reason: str, window: Window) -> SendDecision:
    """A first send, with ``window`` for the cap of ``reason`` and no other send."""
    return send(
        OtpState.empty(),
        phone=window if reason == "phone_cap" else Window.EMPTY,
        ip=window if reason == "ip_cap" else Window.EMPTY,
        prefix=window if reason == "prefix_cap" else Window.EMPTY,
    )


def test_first_send_is_allowed() -> None:
    assert send(OtpState.empty()) == SendAllowed()


def test_resend_cooldown_boundary() -> None:
    state = live(at=NOW)
    assert send(state, at=NOW) == SendRefused("cooldown", timedelta(seconds=30))
    assert send(state, at=NOW + timedelta(seconds=10)) == SendRefused(
        "cooldown", timedelta(seconds=20)
    )
    assert send(state, at=NOW + timedelta(seconds=30) - TICK) == SendRefused("cooldown", TICK)
    assert send(state, at=NOW + timedelta(seconds=30)) == SendAllowed()


@pytest.mark.parametrize(("reason", "cap"), CAPS)
def test_send_cap_boundary(reason: SendRefusalReason, cap: int) -> None:
    assert send_counting(reason, Window(cap - 1, NOW)) == SendAllowed()
    assert send_counting(reason, Window(cap)) == SendRefused(reason, HOUR)


def test_prefix_cap_follows_the_policy() -> None:
    policy = OtpPolicy(max_sends_per_prefix=3, prefix_window=timedelta(minutes=10))
    assert send(OtpState.empty(), prefix=Window(2), policy=policy) == SendAllowed()
    assert send(OtpState.empty(), prefix=Window(3), policy=policy) == SendRefused(
        "prefix_cap", timedelta(minutes=10)
    )


@pytest.mark.parametrize(("reason", "cap"), CAPS)
def test_cap_wait_is_exact_when_the_oldest_send_is_known(
    reason: SendRefusalReason, cap: int
) -> None:
    counted = Window(cap, NOW - timedelta(minutes=50))
    assert send_counting(reason, counted) == SendRefused(reason, timedelta(minutes=10))


@pytest.mark.parametrize(("reason", "cap"), CAPS)
def test_cap_wait_falls_back_to_the_window_above_the_cap(
    reason: SendRefusalReason, cap: int
) -> None:
    # With one send more than the cap, the oldest leaving is not enough.
    counted = Window(cap + 1, NOW - timedelta(minutes=50))
    assert send_counting(reason, counted) == SendRefused(reason, HOUR)


def test_cap_wait_is_never_negative() -> None:
    stale = Window(5, NOW - timedelta(hours=2))
    assert send(OtpState.empty(), phone=stale) == SendRefused("phone_cap", timedelta(0))


def test_the_longest_wait_is_reported() -> None:
    cooling = live(at=NOW - timedelta(seconds=10))
    assert send(cooling) == SendRefused("cooldown", timedelta(seconds=20))
    assert send(cooling, phone=Window(5)) == SendRefused("phone_cap", HOUR)
    short_cap = send(cooling, phone=Window(5, NOW - HOUR + TICK))
    assert short_cap == SendRefused("cooldown", timedelta(seconds=20))
    ip = Window(20, NOW - timedelta(minutes=50))
    prefix = Window(50, NOW - timedelta(minutes=20))
    assert send(cooling, ip=ip, prefix=prefix) == SendRefused("prefix_cap", timedelta(minutes=40))


def test_equal_waits_report_in_precedence_order() -> None:
    phone, ip, prefix = Window(5), Window(20), Window(50)
    empty = OtpState.empty()
    assert send(empty, phone=phone, ip=ip, prefix=prefix) == SendRefused("phone_cap", HOUR)
    assert send(empty, ip=ip, prefix=prefix) == SendRefused("ip_cap", HOUR)
    slow = OtpPolicy(resend_cooldown=HOUR)
    just_sent = issue(empty, RIGHT, NOW, slow, ip=OWNER_IP)
    refused = send(just_sent, phone=phone, ip=ip, prefix=prefix, policy=slow)
    assert refused == SendRefused("cooldown", HOUR)


def test_guessing_never_refuses_a_send() -> None:
    # The code dies at its fifth wrong guess, every guess window is full: the owner
    # still gets a new code once the cooldown is over.
    dead = verify(live(attempts=4), WRONG, ip=OTHER_IP)
    assert isinstance(dead, Rejected) and dead.new_state.code_digest is None
    refused = verify(dead.new_state, ip=OTHER_IP, ip_guesses=Window(30), phone_guesses=Window(10))
    assert isinstance(refused, GuessRefused)
    later = NOW + timedelta(seconds=30)
    assert send(refused.new_state, at=later) == SendAllowed()


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        send(OtpState.empty(), at=NOW.replace(tzinfo=None))


# --- Issuing ---------------------------------------------------------------------------


def test_issue_replaces_the_code_resets_attempts_and_records_the_address() -> None:
    later = NOW + timedelta(minutes=2)
    new_digest = digest("000001")
    state = issue(live(attempts=3, ip=OTHER_IP), new_digest, later, POLICY, ip=OWNER_IP)
    assert state == OtpState(
        code_digest=new_digest,
        expires_at=later + timedelta(minutes=5),
        attempts=0,
        last_sent_at=later,
        sent_to_ip=OWNER_IP,
    )
    old_code = verify(state, RIGHT, later)
    assert isinstance(old_code, Rejected) and old_code.reason == "wrong_code"


def test_issue_from_an_unknown_address() -> None:
    state = issue(live(ip=OWNER_IP), RIGHT, NOW, POLICY, ip=None)
    assert state.sent_to_ip is None and state.code_digest == RIGHT


def test_issue_refuses_naive_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        issue(OtpState.empty(), RIGHT, NOW.replace(tzinfo=None), POLICY, ip=OWNER_IP)


# --- Verifying -------------------------------------------------------------------------


def test_right_code_is_accepted_and_consumed() -> None:
    state = live(attempts=2)
    outcome = verify(state, RIGHT, NOW + timedelta(minutes=1))
    assert outcome == Accepted(OtpState(None, None, 0, NOW, None))
    # The consumed state cannot be used again (replay).
    replay = verify(outcome.new_state, RIGHT, NOW + timedelta(minutes=1))
    assert replay == Rejected(outcome.new_state, "no_code", attempts_left=0, counted=False)


def test_wrong_code_counts_an_attempt_and_keeps_the_code() -> None:
    outcome = verify(live(), WRONG, ip=OTHER_IP)
    assert outcome == Rejected(live(attempts=1), "wrong_code", attempts_left=4, counted=True)


def test_code_for_another_phone_or_role_is_wrong() -> None:
    for presented in (digest("123456", phone="+919876543211"), digest("123456", role="provider")):
        outcome = verify(live(), presented)
        assert isinstance(outcome, Rejected) and outcome.reason == "wrong_code" and outcome.counted


def test_a_digest_differing_only_in_its_last_byte_is_wrong() -> None:
    almost = RIGHT[:-1] + bytes([RIGHT[-1] ^ 1])
    outcome = verify(live(), almost)
    assert isinstance(outcome, Rejected) and outcome.reason == "wrong_code"


def test_fourth_wrong_guess_leaves_one_and_the_fifth_kills_the_code() -> None:
    fourth = verify(live(attempts=3), WRONG)
    assert fourth == Rejected(live(attempts=4), "wrong_code", attempts_left=1, counted=True)
    fifth = verify(live(attempts=4), WRONG)
    dead = OtpState(
        code_digest=None, expires_at=None, attempts=5, last_sent_at=NOW, sent_to_ip=None
    )
    assert fifth == Rejected(dead, "wrong_code", attempts_left=0, counted=True)


def test_a_dead_code_is_gone() -> None:
    fifth = verify(live(attempts=4), WRONG)
    assert fifth.new_state.code_digest is None
    after = verify(fifth.new_state, RIGHT, NOW + timedelta(seconds=1))
    assert after == Rejected(fifth.new_state, "no_code", attempts_left=0, counted=False)


def test_right_code_after_four_wrong_guesses_is_accepted() -> None:
    state = live()
    for left in (4, 3, 2, 1):
        outcome = verify(state, WRONG, ip=OTHER_IP)
        assert isinstance(outcome, Rejected) and outcome.attempts_left == left
        state = outcome.new_state
    assert isinstance(verify(state, RIGHT), Accepted)


def test_a_single_attempt_policy_kills_the_code_on_the_first_wrong_guess() -> None:
    outcome = verify(live(), WRONG, policy=OtpPolicy(max_attempts=1))
    assert isinstance(outcome, Rejected) and outcome.attempts_left == 0
    assert outcome.new_state.code_digest is None


def test_no_code_is_rejected_without_counting() -> None:
    state = OtpState.empty()
    assert verify(state) == Rejected(state, "no_code", attempts_left=0, counted=False)


def test_code_expires_exactly_at_expires_at() -> None:
    expiry = NOW + timedelta(minutes=5)
    assert isinstance(verify(live(), RIGHT, expiry - TICK), Accepted)
    outcome = verify(live(attempts=2), RIGHT, expiry)
    gone = OtpState(None, None, attempts=2, last_sent_at=NOW, sent_to_ip=None)
    assert outcome == Rejected(gone, "expired", attempts_left=0, counted=False)


def test_wrong_code_after_expiry_does_not_count() -> None:
    outcome = verify(live(attempts=4), WRONG, NOW + HOUR, ip=OTHER_IP)
    assert isinstance(outcome, Rejected)
    assert (outcome.reason, outcome.counted) == ("expired", False)
    assert outcome.new_state.attempts == 4


@pytest.mark.parametrize("ip", [OWNER_IP, OTHER_IP, None])
@pytest.mark.parametrize("state", [live(), OtpState.empty()], ids=["live", "no code"])
def test_ip_guess_cap_refuses_even_the_right_code_and_counts_nothing(
    ip: str | None, state: OtpState
) -> None:
    outcome = verify(state, RIGHT, ip=ip, ip_guesses=Window(30))
    assert outcome == GuessRefused(state, "ip_guesses", HOUR)


def test_ip_guess_cap_boundary() -> None:
    assert isinstance(verify(live(), RIGHT, ip=OTHER_IP, ip_guesses=Window(29)), Accepted)
    policy = OtpPolicy(max_guesses_per_ip=3)
    refused = verify(live(), RIGHT, ip=OTHER_IP, ip_guesses=Window(3), policy=policy)
    assert isinstance(refused, GuessRefused) and refused.reason == "ip_guesses"


def test_ip_guess_cap_is_checked_before_the_phone_guess_cap() -> None:
    # Both refuse; the address's cap answers first even though its wait is shorter.
    ip_guesses = Window(30, NOW - HOUR + timedelta(minutes=1))
    outcome = verify(live(), ip=OTHER_IP, phone_guesses=Window(10), ip_guesses=ip_guesses)
    assert outcome == GuessRefused(live(), "ip_guesses", timedelta(minutes=1))


@pytest.mark.parametrize("presented", [RIGHT, WRONG], ids=["right", "wrong"])
def test_phone_guess_cap_refuses_other_addresses(presented: bytes) -> None:
    state = live(ip=OWNER_IP)
    outcome = verify(state, presented, ip=OTHER_IP, phone_guesses=Window(10))
    assert outcome == GuessRefused(state, "phone_guesses", HOUR)


def test_phone_guess_cap_boundary() -> None:
    below = verify(live(), WRONG, ip=OTHER_IP, phone_guesses=Window(9))
    assert isinstance(below, Rejected) and below.counted
    policy = OtpPolicy(max_guesses_per_phone=2)
    refused = verify(live(), RIGHT, ip=OTHER_IP, phone_guesses=Window(2), policy=policy)
    assert isinstance(refused, GuessRefused) and refused.reason == "phone_guesses"


@pytest.mark.parametrize("phone_guesses", [Window(10), Window(500, NOW)])
def test_phone_guess_cap_still_checks_the_asking_address(phone_guesses: Window) -> None:
    # An attacker spent the phone's guess budget; the owner asked for this code.
    state = live(ip=OWNER_IP)
    typo = verify(state, WRONG, ip=OWNER_IP, phone_guesses=phone_guesses)
    assert typo == Rejected(live(attempts=1), "wrong_code", attempts_left=4, counted=True)
    right = verify(typo.new_state, RIGHT, ip=OWNER_IP, phone_guesses=phone_guesses)
    assert right == Accepted(OtpState(None, None, 0, NOW, None))


@pytest.mark.parametrize("asked_from", [None, OWNER_IP])
def test_an_unknown_address_is_never_the_asking_address(asked_from: str | None) -> None:
    state = live(ip=asked_from)
    outcome = verify(state, RIGHT, ip=None, phone_guesses=Window(10))
    assert outcome == GuessRefused(state, "phone_guesses", HOUR)


def test_phone_guess_cap_does_not_hide_a_missing_or_expired_code() -> None:
    none = verify(OtpState.empty(), ip=OTHER_IP, phone_guesses=Window(10))
    assert isinstance(none, Rejected) and none.reason == "no_code"
    expired = verify(live(), at=NOW + HOUR, ip=OTHER_IP, phone_guesses=Window(10))
    assert isinstance(expired, Rejected) and expired.reason == "expired"


@pytest.mark.parametrize(
    ("reason", "cap"), [("ip_guesses", 30), ("phone_guesses", 10)], ids=["ip", "phone"]
)
@pytest.mark.parametrize(
    ("above", "oldest_age", "wait"),
    [
        (0, timedelta(minutes=50), timedelta(minutes=10)),
        (0, HOUR - TICK, TICK),
        (0, None, HOUR),
        (1, timedelta(minutes=50), HOUR),
        (0, timedelta(hours=2), timedelta(0)),
    ],
    ids=["exact", "an-instant", "oldest-unknown", "above-the-cap", "never-negative"],
)
def test_guess_refusal_waits(
    reason: GuessRefusalReason,
    cap: int,
    above: int,
    oldest_age: timedelta | None,
    wait: timedelta,
) -> None:
    window = Window(cap + above, None if oldest_age is None else NOW - oldest_age)
    outcome = verify(
        live(),
        RIGHT,
        ip=OTHER_IP,
        phone_guesses=window if reason == "phone_guesses" else Window.EMPTY,
        ip_guesses=window if reason == "ip_guesses" else Window.EMPTY,
    )
    assert outcome == GuessRefused(live(), reason, wait)


def test_verify_refuses_naive_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify(live(), RIGHT, NOW.replace(tzinfo=None))


# --- Properties ------------------------------------------------------------------------


def _window_later(count: int, cap: int, oldest_age: timedelta | None, later: datetime) -> Window:
    """A window of one hour that counts ``count`` events at NOW, the oldest ``oldest_age``
    old (unknown if ``None``), as the rules may see it at ``later``, with no new events
    in between: an upper bound on the events left in it, and its oldest one if known."""
    oldest = None if oldest_age is None or count == 0 else NOW - oldest_age
    if later >= NOW + HOUR:
        return Window.EMPTY
    if oldest is not None and later >= oldest + HOUR:
        # The oldest has left; the others' times are unknown.
        return Window(count - 1) if count == cap else Window(count)
    return Window(count, oldest)


_ages = st.none() | st.timedeltas(timedelta(0), HOUR - TICK)


@DETERMINISTIC
@given(
    since_last_send=st.none() | st.timedeltas(timedelta(0), timedelta(minutes=2)),
    phone=st.integers(0, 10),
    ip=st.integers(0, 30),
    prefix=st.integers(0, 60),
    phone_age=_ages,
    ip_age=_ages,
    prefix_age=_ages,
)
def test_a_refused_send_succeeds_after_retry_after_and_not_before(
    since_last_send: timedelta | None,
    phone: int,
    ip: int,
    prefix: int,
    phone_age: timedelta | None,
    ip_age: timedelta | None,
    prefix_age: timedelta | None,
) -> None:
    last_sent_at = None if since_last_send is None else NOW - since_last_send
    state = replace(OtpState.empty(), last_sent_at=last_sent_at)

    def at(moment: datetime) -> SendDecision:
        # No new sends in between: each window only loses sends.
        return send(
            state,
            moment,
            phone=_window_later(phone, 5, phone_age, moment),
            ip=_window_later(ip, 20, ip_age, moment),
            prefix=_window_later(prefix, 50, prefix_age, moment),
        )

    decision = at(NOW)
    if isinstance(decision, SendAllowed):
        return
    assert decision.retry_after > timedelta(0)

    # The wait is long enough for every reason at once ...
    assert at(NOW + decision.retry_after) == SendAllowed()
    # ... and the reason reported still holds an instant earlier.
    assert isinstance(at(NOW + decision.retry_after - TICK), SendRefused)


@DETERMINISTIC
@given(
    ip=st.sampled_from([OWNER_IP, OTHER_IP, None]),
    phone_count=st.integers(0, 15),
    ip_count=st.integers(0, 40),
    phone_age=_ages,
    ip_age=_ages,
)
def test_a_refused_guess_passes_that_cap_after_retry_after_and_not_before(
    ip: str | None,
    phone_count: int,
    ip_count: int,
    phone_age: timedelta | None,
    ip_age: timedelta | None,
) -> None:
    policy = OtpPolicy(ttl=timedelta(hours=2))  # the code outlives every wait
    state = issue(OtpState.empty(), RIGHT, NOW, policy, ip=OWNER_IP)

    def at(moment: datetime) -> VerifyOutcome:
        # No new guesses in between: each window only loses guesses.
        return verify(
            state,
            RIGHT,
            moment,
            ip=ip,
            policy=policy,
            phone_guesses=_window_later(phone_count, 10, phone_age, moment),
            ip_guesses=_window_later(ip_count, 30, ip_age, moment),
        )

    outcome = at(NOW)
    if not isinstance(outcome, GuessRefused):
        assert isinstance(outcome, Accepted)
        return
    assert outcome.new_state == state

    assert outcome.retry_after > timedelta(0)
    # The wait is long enough for the reason reported (another may refuse then) ...
    after = at(NOW + outcome.retry_after)
    assert not (isinstance(after, GuessRefused) and after.reason == outcome.reason)
    # ... and that reason still holds an instant earlier.
    before = at(NOW + outcome.retry_after - TICK)
    assert isinstance(before, GuessRefused) and before.reason == outcome.reason


@DETERMINISTIC
@given(
    codes=st.lists(st.just("123456") | st.from_regex(r"[0-9]{6}", fullmatch=True), max_size=12),
    step=st.timedeltas(timedelta(0), timedelta(seconds=90)),
)
def test_only_the_right_code_is_ever_accepted(codes: list[str], step: timedelta) -> None:
    state, now = live(), NOW
    for code in codes:
        outcome = verify(state, digest(code), now)
        if isinstance(outcome, Accepted):
            assert code == "123456"
        state, now = outcome.new_state, now + step


# --- An attacker against an owner ------------------------------------------------------

ATTACKER_IPS = ("203.0.113.1", "203.0.113.2", "203.0.113.3", None)
# The owner's address shared with the attacker (a carrier NAT) is a choice too.
ANY_IP = st.sampled_from((*ATTACKER_IPS, OWNER_IP))


def _window_at(times: list[datetime], now: datetime, length: timedelta) -> Window:
    """The events counted at ``now`` in a sliding window of ``length``."""
    counted = [t for t in times if t <= now < t + length]
    return Window(len(counted), min(counted) if counted else None)


def _most_in_any_window(times: list[datetime], length: timedelta) -> int:
    """The most events any sliding window of ``length`` ever counted."""
    # A window holding the most events can end at one of them.
    return max((_window_at(times, end, length).count for end in times), default=0)


class AttackerAgainstOwner(RuleBasedStateMachine):
    """An attacker with several addresses, who never knows a code, asks for codes and
    guesses at will; an owner with one address asks for a code and types it in.

    The test keeps its own windows (the times of sends and of counted wrong guesses)
    and its own model of the live code, and checks: nobody but the asking address gets
    past the phone's guess budget, no address past its own, and the owner, whenever a
    code may be sent, logs in with it, whatever the attacker did before.
    """

    @initialize(
        max_attempts=st.integers(1, 5),
        per_phone=st.integers(1, 6),
        per_ip=st.integers(1, 8),
        sends_per_phone=st.integers(2, 6),
        guess_window=st.sampled_from([timedelta(minutes=10), HOUR]),
        phone_window=st.sampled_from([timedelta(minutes=10), HOUR]),
    )
    def start(
        self,
        max_attempts: int,
        per_phone: int,
        per_ip: int,
        sends_per_phone: int,
        guess_window: timedelta,
        phone_window: timedelta,
    ) -> None:
        self.policy = OtpPolicy(
            max_attempts=max_attempts,
            max_guesses_per_phone=per_phone,
            max_guesses_per_ip=per_ip,
            guess_window=guess_window,
            max_sends_per_phone=sends_per_phone,
            phone_window=phone_window,
            max_sends_per_ip=4,
            ip_window=timedelta(minutes=30),
        )
        self.now = NOW
        self.state = OtpState.empty()
        self.sends: list[tuple[datetime, str | None]] = []
        # Counted wrong guesses: when, from where, and whether that address had asked
        # for the live code.
        self.wrong: list[tuple[datetime, str | None, bool]] = []
        # The model of the live code.
        self.expires_at: datetime | None = None
        self.asked_by: str | None = None
        self.wrong_on_this_code = 0

    # The windows a caller would count.

    def guess_windows(self, ip: str | None) -> tuple[Window, Window]:
        length = self.policy.guess_window
        phone = _window_at([t for t, _, _ in self.wrong], self.now, length)
        own = _window_at([t for t, a, _ in self.wrong if a == ip], self.now, length)
        return phone, own

    def request(self, ip: str | None) -> SendDecision:
        policy = self.policy
        everything = [t for t, _ in self.sends]
        decision = decide_send(
            self.state,
            self.now,
            policy,
            phone=_window_at(everything, self.now, policy.phone_window),
            ip=_window_at([t for t, a in self.sends if a == ip], self.now, policy.ip_window),
            prefix=_window_at(everything, self.now, policy.prefix_window),
        )
        if isinstance(decision, SendAllowed):
            self.state = issue(self.state, RIGHT, self.now, policy, ip=ip)
            self.sends.append((self.now, ip))
            self.expires_at, self.asked_by = self.now + policy.ttl, ip
            self.wrong_on_this_code = 0
        return decision

    def guess(self, ip: str | None, presented: bytes) -> VerifyOutcome:
        """Present a code from ``ip``, check the outcome against the model, record it."""
        phone_guesses, ip_guesses = self.guess_windows(ip)
        outcome = decide_verify(
            self.state,
            presented,
            self.now,
            self.policy,
            ip=ip,
            phone_guesses=phone_guesses,
            ip_guesses=ip_guesses,
        )
        asking = ip is not None and ip == self.asked_by
        if ip_guesses.count >= self.policy.max_guesses_per_ip:
            assert isinstance(outcome, GuessRefused) and outcome.reason == "ip_guesses"
        elif self.expires_at is None:
            assert isinstance(outcome, Rejected) and outcome.reason == "no_code"
        elif self.now >= self.expires_at:
            assert isinstance(outcome, Rejected) and outcome.reason == "expired"
            self.expires_at = self.asked_by = None
        elif not asking and phone_guesses.count >= self.policy.max_guesses_per_phone:
            assert isinstance(outcome, GuessRefused) and outcome.reason == "phone_guesses"
        elif presented == RIGHT:
            assert isinstance(outcome, Accepted)
            self.expires_at = self.asked_by = None
        else:
            self.wrong_on_this_code += 1
            left = max(self.policy.max_attempts - self.wrong_on_this_code, 0)
            assert isinstance(outcome, Rejected)
            assert (outcome.reason, outcome.attempts_left, outcome.counted) == (
                "wrong_code",
                left,
                True,
            )
            if left == 0:
                self.expires_at = self.asked_by = None
        if isinstance(outcome, GuessRefused):
            assert outcome.new_state == self.state and outcome.retry_after >= timedelta(0)
        if isinstance(outcome, Rejected) and outcome.counted:
            self.wrong.append((self.now, ip, asking))
        self.state = outcome.new_state
        return outcome

    # The attacker.

    @rule(wait=st.timedeltas(timedelta(0), timedelta(minutes=20)))
    def wait(self, wait: timedelta) -> None:
        self.now += wait

    @rule(ip=ANY_IP)
    def attacker_asks_for_a_code(self, ip: str | None) -> None:
        self.request(ip)

    @rule(ip=ANY_IP, code=st.from_regex(r"[0-9]{6}", fullmatch=True))
    def attacker_guesses(self, ip: str | None, code: str) -> None:
        self.guess(ip, digest(code) if code != "123456" else WRONG)

    @rule(ip=ANY_IP, times=st.integers(1, 8))
    def attacker_guesses_in_a_burst(self, ip: str | None, times: int) -> None:
        for _ in range(times):
            self.guess(ip, WRONG)

    # The owner.

    @rule(
        typos=st.integers(0, 4),
        delay=st.timedeltas(timedelta(0), timedelta(minutes=5) - TICK),
    )
    def owner_logs_in(self, typos: int, delay: timedelta) -> None:
        """(c) Whenever the owner may be sent a code, the owner's address, while under
        its guess cap, gets every try checked and logs in with the code."""
        if isinstance(self.request(OWNER_IP), SendRefused):
            return  # the attacker may spend the phone's send cap
        for _ in range(min(typos, self.policy.max_attempts - 1)):
            under_cap = self.guess_windows(OWNER_IP)[1].count < self.policy.max_guesses_per_ip
            typo = self.guess(OWNER_IP, WRONG)
            if under_cap:
                assert isinstance(typo, Rejected) and typo.reason == "wrong_code", typo
        self.now += delay
        assert self.expires_at is not None and self.now < self.expires_at
        under_cap = self.guess_windows(OWNER_IP)[1].count < self.policy.max_guesses_per_ip
        outcome = self.guess(OWNER_IP, RIGHT)
        if under_cap:
            assert isinstance(outcome, Accepted), outcome

    # What must always hold.

    @invariant()
    def other_addresses_stay_within_the_phones_guess_budget(self) -> None:
        """(a) Counted wrong guesses from addresses that had not asked for the code."""
        others = [t for t, _, asking in self.wrong if not asking]
        most = _most_in_any_window(others, self.policy.guess_window)
        assert most <= self.policy.max_guesses_per_phone

    @invariant()
    def every_address_stays_within_its_guess_budget(self) -> None:
        """(b) Counted wrong guesses from each address (the unknown one included)."""
        for ip in {a for _, a, _ in self.wrong}:
            mine = [t for t, a, _ in self.wrong if a == ip]
            assert _most_in_any_window(mine, self.policy.guess_window) <= (
                self.policy.max_guesses_per_ip
            )

    @invariant()
    def the_phone_stays_within_its_send_budget(self) -> None:
        times = [t for t, _ in self.sends]
        assert _most_in_any_window(times, self.policy.phone_window) <= (
            self.policy.max_sends_per_phone
        )

    @invariant()
    def the_state_matches_the_model(self) -> None:
        assert self.state.expires_at == self.expires_at
        assert self.state.sent_to_ip == self.asked_by
        if self.state.code_digest is not None:
            assert self.state.attempts == self.wrong_on_this_code < self.policy.max_attempts


TestAttackerAgainstOwner = AttackerAgainstOwner.TestCase
TestAttackerAgainstOwner.settings = settings(
    DETERMINISTIC, max_examples=150, stateful_step_count=40
)
