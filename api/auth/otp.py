"""One-time login codes sent by SMS: the rules, with no I/O.

The store (PostgreSQL or memory) keeps one :class:`OtpState` per ``(phone, role)`` and
counts recent sends; the driver asks this module what to do and persists the answer::

    decide_send(state, now, policy, sends_for_phone, sends_for_ip)
        -> SendAllowed   then  issue(state, code_digest(...), now, policy) -> store, SMS
        -> SendRefused(reason, retry_after)

    decide_verify(state, code_digest(...), now, policy)
        -> Accepted(new_state)            consume the challenge atomically, log in
        -> Rejected(new_state, reason, attempts_left)
        -> Locked(new_state, retry_after)

Every outcome that can change the state carries ``new_state``; the caller stores it
(unchanged when nothing happened). Time comes in as ``now`` (timezone-aware) and the
code's randomness through ``randbelow``, so every boundary is testable with plain calls.

All "until" instants are exclusive: a code is usable while ``now < expires_at``, a
lock holds while ``now < locked_until`` and the resend cooldown while
``now < last_sent_at + resend_cooldown``.

Brute force is bounded by the policy: a code survives ``max_attempts - 1`` wrong
guesses, and a resend (which resets the counter) is capped per phone, so an attacker
gets at most ``max_sends_per_phone * (max_attempts - 1)`` guesses per ``phone_window``
out of ``10 ** code_length`` codes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal, TypeAlias

__all__ = [
    "Accepted",
    "Locked",
    "OtpPolicy",
    "OtpState",
    "RejectReason",
    "Rejected",
    "SendAllowed",
    "SendDecision",
    "SendRefusalReason",
    "SendRefused",
    "VerifyOutcome",
    "code_digest",
    "decide_send",
    "decide_verify",
    "digests_equal",
    "generate_code",
    "issue",
]


@dataclass(frozen=True)
class OtpPolicy:
    """Limits for sending and checking codes, loaded once from the configuration."""

    # The code
    code_length: int = 6
    ttl: timedelta = timedelta(minutes=5)
    # Guessing
    max_attempts: int = 5
    lock_duration: timedelta = timedelta(minutes=15)
    # Sending (each SMS costs money and can be used to harass a number)
    resend_cooldown: timedelta = timedelta(seconds=30)
    max_sends_per_phone: int = 5
    phone_window: timedelta = timedelta(hours=1)
    max_sends_per_ip: int = 20
    ip_window: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        # A policy that cannot be satisfied would lock everyone out silently.
        if not 4 <= self.code_length <= 12:
            raise ValueError("code_length must be between 4 and 12")
        for name in ("max_attempts", "max_sends_per_phone", "max_sends_per_ip"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("ttl", "lock_duration", "phone_window", "ip_window"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"{name} must be positive")
        if self.resend_cooldown < timedelta(0):
            raise ValueError("resend_cooldown must not be negative")


# --- Codes -----------------------------------------------------------------------------


def generate_code(length: int = 6, randbelow: Callable[[int], int] = secrets.randbelow) -> str:
    """Return ``length`` decimal digits, each of the ``10 ** length`` codes equally likely.

    One draw over the whole range (then zero padding) keeps the distribution uniform
    as long as ``randbelow`` is; leading zeros are legitimate codes.
    """
    if length < 1:
        raise ValueError("length must be at least 1")
    space = 10**length
    value = randbelow(space)
    if not 0 <= value < space:
        raise ValueError(f"randbelow({space}) returned {value}, out of range")
    return str(value).zfill(length)


_DIGEST_CONTEXT = b"buildxpert-rtc/otp/v1"


def code_digest(key: bytes, phone: str, role: str, code: str) -> bytes:
    """HMAC-SHA256 of the code bound to its phone and role, so the code is never stored.

    Each field is UTF-8 encoded and prefixed with its length (4 bytes, big endian),
    after a version tag, so no two different ``(phone, role, code)`` triples encode
    to the same message. Binding phone and role means a leaked digest cannot be
    replayed for another account, and the key means a leaked table cannot be
    brute-forced offline over the small code space.
    """
    if not key:
        raise ValueError("the OTP key must not be empty")
    message = bytearray(_DIGEST_CONTEXT)
    for field in (phone, role, code):
        encoded = field.encode("utf-8")
        message += len(encoded).to_bytes(4, "big")
        message += encoded
    return hmac.new(key, bytes(message), hashlib.sha256).digest()


def digests_equal(a: bytes, b: bytes) -> bool:
    """Compare digests in time independent of where they differ (no timing oracle)."""
    return hmac.compare_digest(a, b)


# --- State -----------------------------------------------------------------------------


@dataclass(frozen=True)
class OtpState:
    """What the store keeps per ``(phone, role)`` between requests.

    ``code_digest`` and ``expires_at`` are both set (a live or expired code) or both
    ``None`` (no code). ``attempts`` counts wrong guesses on the current code.
    """

    code_digest: bytes | None
    expires_at: datetime | None
    attempts: int
    locked_until: datetime | None
    last_sent_at: datetime | None

    def __post_init__(self) -> None:
        if (self.code_digest is None) != (self.expires_at is None):
            raise ValueError("code_digest and expires_at must be set together")
        if self.attempts < 0:
            raise ValueError("attempts must not be negative")

    @classmethod
    def empty(cls) -> OtpState:
        """The state of a phone that never asked for a code."""
        return cls(
            code_digest=None, expires_at=None, attempts=0, locked_until=None, last_sent_at=None
        )

    def is_locked(self, now: datetime) -> bool:
        """Whether a lock holds at ``now`` (it ends exactly at ``locked_until``)."""
        return self.locked_until is not None and now < self.locked_until


# --- Sending ---------------------------------------------------------------------------

SendRefusalReason: TypeAlias = Literal["locked", "cooldown", "phone_cap", "ip_cap"]


@dataclass(frozen=True)
class SendAllowed:
    """Send a new code: generate it, store ``issue(...)``, then hand it to the SMS gateway."""


@dataclass(frozen=True)
class SendRefused:
    """No SMS now. ``retry_after`` is the wait before a send could succeed (never negative)."""

    reason: SendRefusalReason
    retry_after: timedelta


SendDecision: TypeAlias = SendAllowed | SendRefused


def decide_send(
    state: OtpState,
    now: datetime,
    policy: OtpPolicy,
    sends_for_phone: int,
    sends_for_ip: int,
    *,
    oldest_phone_send_at: datetime | None = None,
    oldest_ip_send_at: datetime | None = None,
) -> SendDecision:
    """May a new code be sent to this phone, from this client address, at ``now``?

    ``sends_for_phone`` / ``sends_for_ip`` count the sends within the last
    ``phone_window`` / ``ip_window`` (a send at ``t`` counts while ``now < t + window``).
    A cap refuses once the count has reached the maximum.

    ``retry_after`` for a cap: when the caller passes the time of the oldest send still
    counted (``oldest_*_send_at``) and the count is exactly at the cap, the wait is exact
    (until that send leaves the window). Otherwise it is the whole window, an upper
    bound: every send now counted will have left the window by then.

    When several rules refuse, the one with the longest wait is reported, because no
    send can succeed before all of them have passed; ties go to the first of
    locked, cooldown, phone_cap, ip_cap. An expired lock no longer refuses.
    """
    _require_aware(now)
    refusals: list[SendRefused] = []
    if state.locked_until is not None and now < state.locked_until:
        refusals.append(SendRefused("locked", state.locked_until - now))
    if state.last_sent_at is not None:
        cooldown_end = state.last_sent_at + policy.resend_cooldown
        if now < cooldown_end:
            refusals.append(SendRefused("cooldown", cooldown_end - now))
    if sends_for_phone >= policy.max_sends_per_phone:
        exact = sends_for_phone == policy.max_sends_per_phone
        wait = _cap_wait(now, policy.phone_window, oldest_phone_send_at if exact else None)
        refusals.append(SendRefused("phone_cap", wait))
    if sends_for_ip >= policy.max_sends_per_ip:
        exact = sends_for_ip == policy.max_sends_per_ip
        wait = _cap_wait(now, policy.ip_window, oldest_ip_send_at if exact else None)
        refusals.append(SendRefused("ip_cap", wait))
    if not refusals:
        return SendAllowed()
    # max() keeps the first of equal waits, which is the precedence order above.
    return max(refusals, key=lambda refusal: refusal.retry_after)


def _cap_wait(now: datetime, window: timedelta, oldest: datetime | None) -> timedelta:
    # Above the cap, the oldest send leaving is not enough: fall back to the window.
    if oldest is None:
        return window
    return max(oldest + window - now, timedelta(0))


def issue(state: OtpState, digest: bytes, now: datetime, policy: OtpPolicy) -> OtpState:
    """The state after sending a new code whose digest is ``digest``.

    The new code replaces any previous one (an old SMS arriving late no longer works)
    and gets a fresh count of attempts. A lock still active at ``now`` is kept — only
    :func:`decide_send` may allow a send, and issuing must never lift a lock — while an
    expired one is dropped.
    """
    _require_aware(now)
    return OtpState(
        code_digest=digest,
        expires_at=now + policy.ttl,
        attempts=0,
        locked_until=state.locked_until if state.is_locked(now) else None,
        last_sent_at=now,
    )


# --- Verifying -------------------------------------------------------------------------

RejectReason: TypeAlias = Literal["no_code", "expired", "wrong_code"]


@dataclass(frozen=True)
class Accepted:
    """The code is right. Store ``new_state`` (code consumed) atomically with the login,
    e.g. a compare-and-set on the digest, so the same code cannot log in twice."""

    new_state: OtpState


@dataclass(frozen=True)
class Rejected:
    """The code did not log in. ``attempts_left`` is how many more wrong guesses the
    current code survives; it is 0 when there is no usable code (ask for a new one)."""

    new_state: OtpState
    reason: RejectReason
    attempts_left: int


@dataclass(frozen=True)
class Locked:
    """Too many wrong guesses: no code is checked until ``retry_after`` has passed.

    ``new_state`` carries the lock when this very attempt caused it.
    """

    new_state: OtpState
    retry_after: timedelta


VerifyOutcome: TypeAlias = Accepted | Rejected | Locked


def decide_verify(
    state: OtpState, presented_digest: bytes, now: datetime, policy: OtpPolicy
) -> VerifyOutcome:
    """Check a presented code (as its :func:`code_digest`) against the stored state.

    In order: an active lock answers :class:`Locked` even for the right code (otherwise
    the lock would not stop guessing); no code, or an expired one, is rejected without
    counting an attempt; a wrong code counts one, and the ``max_attempts``-th wrong
    code clears the code, starts a lock of ``lock_duration`` and answers :class:`Locked`
    straight away.
    """
    _require_aware(now)
    if state.locked_until is not None and now < state.locked_until:
        return Locked(state, state.locked_until - now)
    if state.code_digest is None or state.expires_at is None:
        return Rejected(state, "no_code", attempts_left=0)
    if now >= state.expires_at:
        return Rejected(_without_code(state), "expired", attempts_left=0)
    if digests_equal(state.code_digest, presented_digest):
        return Accepted(replace(_without_code(state), attempts=0))
    attempts = state.attempts + 1
    if attempts >= policy.max_attempts:
        locked = replace(
            _without_code(state), attempts=attempts, locked_until=now + policy.lock_duration
        )
        return Locked(locked, policy.lock_duration)
    return Rejected(replace(state, attempts=attempts), "wrong_code", policy.max_attempts - attempts)


def _without_code(state: OtpState) -> OtpState:
    return replace(state, code_digest=None, expires_at=None)


def _require_aware(now: datetime) -> None:
    # Naive datetimes would compare by the server's local time or raise mid-decision.
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
