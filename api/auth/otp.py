"""One-time login codes sent by SMS: the rules, with no I/O.

The store (PostgreSQL or memory) keeps one :class:`OtpState` per ``(phone, role)`` and
records every send and every counted wrong guess with its phone, client address and
time; the driver counts those events in sliding windows (:class:`Window`), asks this
module what to do and persists the answer::

    decide_send(state, now, policy, phone=Window, ip=Window, prefix=Window)
        -> SendAllowed   then  issue(state, code_digest(...), now, policy, ip=ip)
                               -> store, record the send, SMS
        -> SendRefused(reason, retry_after)

    decide_verify(state, code_digest(...), now, policy,
                  ip=ip, phone_guesses=Window, ip_guesses=Window)
        -> Accepted(new_state)             consume the code atomically, log in
        -> Rejected(new_state, reason, attempts_left, counted)
                                           when counted, record the wrong guess
        -> GuessRefused(new_state, reason, retry_after)
                                           the code was not checked, nothing counted

Every outcome that can change the state carries ``new_state``; the caller stores it
(unchanged when nothing happened). Time comes in as ``now`` (timezone-aware) and the
code's randomness through ``randbelow``, so every boundary is testable with plain calls.

All "until" instants are exclusive: a code is usable while ``now < expires_at``, the
resend cooldown holds while ``now < last_sent_at + resend_cooldown``, and an event at
``t`` counts in a window while ``now < t + window``.

Nobody can lock someone else out
--------------------------------

There is no lock. A lock on the ``(phone, role)`` after a few wrong guesses lets anyone
who knows a phone number keep its owner (an admin too) out, as often as they like,
without ever receiving a code. Instead, guessing is bounded by budgets that an attacker
can spend only for themselves:

* per code: the ``max_attempts``-th wrong guess kills the code (ask for a new one);
* per client address: past ``max_guesses_per_ip`` wrong guesses (on any phone) in
  ``guess_window``, that address may try no code at all;
* per ``(phone, role)``: past ``max_guesses_per_phone`` wrong guesses (from any
  address) in ``guess_window``, only the address that asked for the live code
  (``OtpState.sent_to_ip``) may still try it. The owner, who asks for a fresh code
  from their own address, is therefore still checked: an attacker who spent the
  phone's guess budget cannot deny the owner a fresh code.

The arithmetic, per ``(phone, role)`` and any ``guess_window``, with
``guess_window <= phone_window`` (the defaults: both one hour):

* wrong guesses from addresses that did not ask for the live code: at most
  ``max_guesses_per_phone`` (each is checked only while the phone's window counts fewer);
* wrong guesses from the address that asked for the live code: every code is asked for
  by one address and absorbs at most ``max_attempts`` wrong guesses, and at most
  ``max_sends_per_phone`` codes are sent in the window, plus the one code that may
  already have been live when it began: at most
  ``(max_sends_per_phone + 1) * max_attempts``; from one single address also at most
  ``max_guesses_per_ip``. Hence, per address,
  ``min(max_guesses_per_ip, (max_sends_per_phone + 1) * max_attempts)``.

With the defaults: at most 10 + 5 * 5 = 35 wrong guesses per hour on the codes sent in
that hour, 10 + 6 * 5 = 40 in the worst sliding hour (with a code carried over from the
hour before), out of ``10 ** 6`` codes. A guess hits with probability at most
``10 ** -6`` (one code in a million, never guessed twice by a careful attacker), so an
attacker logs in within one hour with probability at most 40 / 10**6 = 0.004 %, and
within a year of nonstop guessing at one phone (8760 hours, every hour's five SMS
going to the owner) at most 1 - (1 - 40e-6) ** 8760, about 30 %.

What remains: an attacker can spend the phone's send cap (``max_sends_per_phone``,
5 SMS per hour), which is kept against SMS bombing and toll fraud, so the owner may
have to wait for a code; and many users behind one carrier NAT share one address's
guess and send caps, so the per-address defaults are generous. An unknown address
(``ip=None``) is never the address that asked for a code; which per-address window
it is counted in is up to the caller.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import ClassVar, Literal, TypeAlias

__all__ = [
    "Accepted",
    "GuessRefusalReason",
    "GuessRefused",
    "OtpPolicy",
    "OtpState",
    "RejectReason",
    "Rejected",
    "SendAllowed",
    "SendDecision",
    "SendRefusalReason",
    "SendRefused",
    "VerifyOutcome",
    "Window",
    "code_digest",
    "decide_send",
    "decide_verify",
    "digests_equal",
    "generate_code",
    "issue",
    "prefix_of",
]


@dataclass(frozen=True)
class OtpPolicy:
    """Limits for sending and checking codes, loaded once from the configuration."""

    # The code
    code_length: int = 6
    ttl: timedelta = timedelta(minutes=5)
    # Guessing
    max_attempts: int = 5  # wrong guesses per code: the max_attempts-th kills the code
    # Wrong guesses on one (phone, role) from any address per guess_window; past it only
    # the address that asked for the live code may still try it.
    max_guesses_per_phone: int = 10
    # Wrong guesses from one client address (any phone) per guess_window; past it that
    # address may try no code at all.
    max_guesses_per_ip: int = 30
    guess_window: timedelta = timedelta(hours=1)
    # Sending (each SMS costs money and can harass a number; toll fraud pumps premium
    # ranges)
    resend_cooldown: timedelta = timedelta(seconds=30)
    max_sends_per_phone: int = 5
    phone_window: timedelta = timedelta(hours=1)
    max_sends_per_ip: int = 20
    ip_window: timedelta = timedelta(hours=1)
    max_sends_per_prefix: int = 50
    prefix_window: timedelta = timedelta(hours=1)
    # Leading digits of the E.164 number (country code included, no "+") that make a
    # prefix.
    prefix_digits: int = 8

    def __post_init__(self) -> None:
        # A policy that cannot be satisfied would lock everyone out silently.
        if not 4 <= self.code_length <= 12:
            raise ValueError("code_length must be between 4 and 12")
        if not 4 <= self.prefix_digits <= 15:
            raise ValueError("prefix_digits must be between 4 and 15")
        for name in (
            "max_attempts",
            "max_guesses_per_phone",
            "max_guesses_per_ip",
            "max_sends_per_phone",
            "max_sends_per_ip",
            "max_sends_per_prefix",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in ("ttl", "guess_window", "phone_window", "ip_window", "prefix_window"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"{name} must be positive")
        if self.resend_cooldown < timedelta(0):
            raise ValueError("resend_cooldown must not be negative")


@dataclass(frozen=True)
class Window:
    """Events (sends or wrong guesses) still counted in a sliding window: how many, and
    the time of the oldest (``None`` when ``count`` is 0 or unknown).

    An event at ``t`` counts at ``now`` while ``now < t + window``. ``Window.EMPTY``
    (or ``Window(0)``) is a window with no events.
    """

    EMPTY: ClassVar[Window]

    count: int
    oldest: datetime | None = None

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError("count must not be negative")
        if self.count == 0 and self.oldest is not None:
            raise ValueError("an empty window has no oldest event")


Window.EMPTY = Window(0)


def prefix_of(phone: str, policy: OtpPolicy) -> str:
    """The number range ``phone`` (E.164, ``"+919876543210"``) belongs to, for the
    per-prefix send cap: its first ``policy.prefix_digits`` digits, country code
    included, without the ``+`` (``"91987654"`` with 8). A shorter number is its own
    prefix (all its digits).

    Toll fraud sends codes to many numbers of one premium range; a cap per prefix
    bounds it where the per-phone cap cannot.
    """
    digits = phone[1:]
    if not phone.startswith("+") or not (1 <= len(digits) <= 15 and _ascii_digits(digits)):
        raise ValueError(f"not an E.164 phone number: {phone!r}")
    return digits[: policy.prefix_digits]


def _ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


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
    ``sent_to_ip`` is the client address that asked for the current code: ``None``
    when it is unknown or there is no code.
    """

    code_digest: bytes | None
    expires_at: datetime | None
    attempts: int
    last_sent_at: datetime | None
    sent_to_ip: str | None

    def __post_init__(self) -> None:
        if (self.code_digest is None) != (self.expires_at is None):
            raise ValueError("code_digest and expires_at must be set together")
        if self.attempts < 0:
            raise ValueError("attempts must not be negative")
        if self.code_digest is None and self.sent_to_ip is not None:
            raise ValueError("sent_to_ip needs a code")

    @classmethod
    def empty(cls) -> OtpState:
        """The state of a phone that never asked for a code."""
        return cls(
            code_digest=None, expires_at=None, attempts=0, last_sent_at=None, sent_to_ip=None
        )


# --- Sending ---------------------------------------------------------------------------

SendRefusalReason: TypeAlias = Literal["cooldown", "phone_cap", "ip_cap", "prefix_cap"]


@dataclass(frozen=True)
class SendAllowed:
    """Send a new code: generate it, store ``issue(...)``, record the send (phone, client
    address, prefix, time), then hand the code to the SMS gateway."""


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
    *,
    phone: Window,
    ip: Window,
    prefix: Window,
) -> SendDecision:
    """May a new code be sent to this phone, from this client address, at ``now``?

    ``phone`` / ``ip`` / ``prefix`` are the sends within the last ``phone_window`` /
    ``ip_window`` / ``prefix_window`` to this phone (any role), from this client
    address, and to numbers of this :func:`prefix_of`. A cap refuses once the count
    has reached the maximum. Wrong guesses never refuse a send.

    ``retry_after`` for a cap: when the window's ``oldest`` send is known and the count
    is exactly at the cap, the wait is exact (until that send leaves the window, never
    negative). Otherwise it is the whole window, an upper bound: every send now counted
    will have left the window by then.

    When several rules refuse, the one with the longest wait is reported, because no
    send can succeed before all of them have passed; ties go to the first of
    cooldown, phone_cap, ip_cap, prefix_cap.
    """
    _require_aware(now)
    refusals: list[SendRefused] = []
    if state.last_sent_at is not None:
        cooldown_end = state.last_sent_at + policy.resend_cooldown
        if now < cooldown_end:
            refusals.append(SendRefused("cooldown", cooldown_end - now))
    caps: tuple[tuple[SendRefusalReason, Window, int, timedelta], ...] = (
        ("phone_cap", phone, policy.max_sends_per_phone, policy.phone_window),
        ("ip_cap", ip, policy.max_sends_per_ip, policy.ip_window),
        ("prefix_cap", prefix, policy.max_sends_per_prefix, policy.prefix_window),
    )
    for reason, window, cap, length in caps:
        wait = _cap_wait(window, cap, length, now)
        if wait is not None:
            refusals.append(SendRefused(reason, wait))
    if not refusals:
        return SendAllowed()
    # max() keeps the first of equal waits, which is the precedence order above.
    return max(refusals, key=lambda refusal: refusal.retry_after)


def _cap_wait(window: Window, cap: int, length: timedelta, now: datetime) -> timedelta | None:
    """``None`` below the cap, else the wait before the count could be below it."""
    if window.count < cap:
        return None
    # Above the cap, the oldest event leaving is not enough: fall back to the window.
    if window.count > cap or window.oldest is None:
        return length
    return max(window.oldest + length - now, timedelta(0))


def issue(
    state: OtpState, digest: bytes, now: datetime, policy: OtpPolicy, *, ip: str | None
) -> OtpState:
    """The state after sending a new code whose digest is ``digest``, asked for by the
    client address ``ip`` (``None`` when unknown).

    The new code replaces any previous one (an old SMS arriving late no longer works),
    gets a fresh count of attempts, and remembers ``ip``: past the phone's guess budget
    only that address may still try it. Only :func:`decide_send` may allow a send.
    """
    _require_aware(now)
    return replace(
        state,
        code_digest=digest,
        expires_at=now + policy.ttl,
        attempts=0,
        last_sent_at=now,
        sent_to_ip=ip,
    )


# --- Verifying -------------------------------------------------------------------------

RejectReason: TypeAlias = Literal["no_code", "expired", "wrong_code"]
GuessRefusalReason: TypeAlias = Literal["ip_guesses", "phone_guesses"]


@dataclass(frozen=True)
class Accepted:
    """The code is right. Store ``new_state`` (code consumed) atomically with the login,
    e.g. a compare-and-set on the digest, so the same code cannot log in twice."""

    new_state: OtpState


@dataclass(frozen=True)
class Rejected:
    """The code did not log in. ``attempts_left`` is how many more wrong guesses the
    current code survives; it is 0 when there is no usable code (ask for a new one).

    ``counted`` is true for a wrong guess on a live code: the caller records it
    (phone, client address, ``now``) so that the guess windows see it.
    """

    new_state: OtpState
    reason: RejectReason
    attempts_left: int
    counted: bool


@dataclass(frozen=True)
class GuessRefused:
    """This address may not guess now: the code was not checked and nothing was counted.
    ``new_state`` is the state unchanged; ``retry_after`` (never negative) is the wait
    before the window that refused could let a guess through."""

    new_state: OtpState
    reason: GuessRefusalReason
    retry_after: timedelta


VerifyOutcome: TypeAlias = Accepted | Rejected | GuessRefused


def decide_verify(
    state: OtpState,
    presented_digest: bytes,
    now: datetime,
    policy: OtpPolicy,
    *,
    ip: str | None,
    phone_guesses: Window,
    ip_guesses: Window,
) -> VerifyOutcome:
    """Check a presented code (as its :func:`code_digest`) from the client address ``ip``.

    ``phone_guesses`` are the wrong guesses counted on this ``(phone, role)`` from any
    address, ``ip_guesses`` those from this address on any phone, both within the last
    ``guess_window``. In order:

    1. an address at its guess cap is refused (:class:`GuessRefused` ``"ip_guesses"``),
       even for the right code, which is not checked;
    2. no code, or an expired one (cleared), is rejected without counting;
    3. past the phone's guess cap, an address other than the one that asked for the
       live code (``ip is None or ip != state.sent_to_ip``) is refused
       (``"phone_guesses"``); the asking address is still checked;
    4. the right code (constant-time compare) is accepted and consumed;
    5. a wrong code is counted; the ``max_attempts``-th wrong code kills the code.

    ``retry_after`` of a refusal is computed like that of the send caps, over
    ``guess_window``.
    """
    _require_aware(now)
    wait = _cap_wait(ip_guesses, policy.max_guesses_per_ip, policy.guess_window, now)
    if wait is not None:
        return GuessRefused(state, "ip_guesses", wait)
    if state.code_digest is None or state.expires_at is None:
        return Rejected(state, "no_code", attempts_left=0, counted=False)
    if now >= state.expires_at:
        return Rejected(_without_code(state), "expired", attempts_left=0, counted=False)
    if ip is None or ip != state.sent_to_ip:
        wait = _cap_wait(phone_guesses, policy.max_guesses_per_phone, policy.guess_window, now)
        if wait is not None:
            return GuessRefused(state, "phone_guesses", wait)
    if digests_equal(state.code_digest, presented_digest):
        return Accepted(replace(_without_code(state), attempts=0))
    attempts = state.attempts + 1
    if attempts >= policy.max_attempts:
        dead = replace(_without_code(state), attempts=attempts)
        return Rejected(dead, "wrong_code", attempts_left=0, counted=True)
    left = policy.max_attempts - attempts
    return Rejected(replace(state, attempts=attempts), "wrong_code", left, counted=True)


def _without_code(state: OtpState) -> OtpState:
    return replace(state, code_digest=None, expires_at=None, sent_to_ip=None)


def _require_aware(now: datetime) -> None:
    # Naive datetimes would compare by the server's local time or raise mid-decision.
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
