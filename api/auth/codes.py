"""Login codes, sent and checked: the rules of :mod:`api.auth.otp` on the tables of
:mod:`storage.accounts`, the SMS gateway (:mod:`api.auth.sms`) and the metrics.

Sending, in one transaction per request: the region allow-list, then the state of
(phone, role) row-locked, the send windows counted (per phone, per client address, per
number prefix), the rules asked, the new code's digest stored and the send recorded.
The SMS goes out after the commit (a stalled gateway never holds a database
connection). A send the gateway refused (nothing left) is undone: the previous code
comes back and the send counts against no cap. A send with no usable answer (a
timeout) stays counted: the SMS may have gone out, and the code it carries works.

Checking runs inside the caller's transaction, so a right code is consumed atomically
with the login it opens; the caller raises the refusal after committing, so wrong
guesses stay counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import phonenumbers

from api.auth import otp
from api.auth.metrics import AuthMetrics
from api.auth.phones import InvalidPhone, normalize_phone
from api.auth.settings import AuthSettings
from api.auth.sms import SmsRefused, SmsSender, SmsUnavailable, mask_phone
from kernel.clock import Clock
from kernel.errors import InvalidCode, InvalidParams, RateLimited, ServiceUnavailable
from kernel.feature import PortKey
from storage import accounts
from storage.database import Database
from storage.events import Executor

log = logging.getLogger("rtc.auth")

# May (phone, role) be sent a code (an active account or none yet, not blocked)? When
# not, the answer is the same but no SMS goes out.
MayReceive = Callable[[Executor, str, str], Awaitable[bool]]


def policy_of(s: AuthSettings) -> otp.OtpPolicy:
    return otp.OtpPolicy(
        ttl=timedelta(seconds=s.otp_ttl),
        max_attempts=s.otp_max_attempts,
        max_guesses_per_phone=s.otp_max_guesses_per_phone,
        max_guesses_per_ip=s.otp_max_guesses_per_ip,
        guess_window=timedelta(seconds=s.otp_guess_window),
        resend_cooldown=timedelta(seconds=s.otp_resend_cooldown),
        max_sends_per_phone=s.otp_max_per_phone,
        phone_window=timedelta(seconds=s.otp_phone_window),
        max_sends_per_ip=s.otp_max_per_ip,
        ip_window=timedelta(seconds=s.otp_ip_window),
        max_sends_per_prefix=s.otp_max_per_prefix,
        prefix_window=timedelta(seconds=s.otp_prefix_window),
        prefix_digits=s.otp_prefix_digits,
    )


@dataclass(frozen=True, slots=True)
class Sent:
    expires_in: int  # seconds
    resend_after: int  # seconds


class LoginCodes:
    """Login codes: sent by SMS, checked once. Also the proof ``me.delete`` asks for
    (the :data:`LOGIN_CODES` port)."""

    def __init__(
        self,
        db: Database,
        settings: AuthSettings,
        *,
        key: bytes,
        clock: Clock,
        sms: SmsSender,
        metrics: AuthMetrics,
        may_receive: MayReceive,
    ) -> None:
        self._db = db
        self._settings = settings
        self._key = key
        self._clock = clock
        self._sms = sms
        self._metrics = metrics
        self._may_receive = may_receive
        self.policy = policy_of(settings)
        self._regions = frozenset(settings.sms_regions)

    def phone(self, raw: str) -> str:
        """``raw`` in E.164 (InvalidParams on ``phone`` when it is not a mobile number)."""
        try:
            return normalize_phone(raw, self._settings.default_region)
        except InvalidPhone as exc:
            raise InvalidParams(
                f"invalid phone: {exc.reason}", fields=[{"field": "phone", "message": exc.reason}]
            ) from None

    # -- sending --

    async def send(self, phone: str, role: str, ip: str | None) -> Sent:
        """Send a new code to ``phone`` (E.164) for ``role``, asked from ``ip``."""
        self._check_region(phone)
        policy = self.policy
        now = self._clock.now()
        code = otp.generate_code(policy.code_length)
        prefix = otp.prefix_of(phone, policy)
        async with self._db.transaction() as conn:
            before = _state(await accounts.lock_otp(conn, phone, role))
            counts = await accounts.count_sends(
                conn,
                phone=(phone, now - policy.phone_window),
                ip=(ip, now - policy.ip_window),
                prefix=(prefix, now - policy.prefix_window),
            )
            decision = otp.decide_send(
                before,
                now,
                policy,
                phone=_window(counts.phone),
                ip=_window(counts.ip),
                prefix=_window(counts.prefix),
            )
            if isinstance(decision, otp.SendAllowed):
                digest = otp.code_digest(self._key, phone, role, code)
                issued = otp.issue(before, digest, now, policy, ip=ip)
                await accounts.save_otp(conn, phone, role, _row(issued))
                send_id = await accounts.record_send(conn, phone, ip, prefix, now)
                deliverable = await self._may_receive(conn, phone, role)
        if isinstance(decision, otp.SendRefused):
            self._refused(decision.reason, phone, ip)
            raise RateLimited(
                "too many codes requested; wait before asking again",
                retry_after=decision.retry_after.total_seconds(),
                reason=decision.reason,
            )
        sent = Sent(
            expires_in=int(policy.ttl.total_seconds()),
            resend_after=int(policy.resend_cooldown.total_seconds()),
        )
        if deliverable:
            await self._deliver(phone, role, code, sent, before, issued, send_id)
        return sent

    def _check_region(self, phone: str) -> None:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(phone))
        if region not in self._regions:
            self._refused("region", phone, None)
            raise InvalidParams(
                "login codes are not sent to numbers of this country",
                fields=[{"field": "phone", "message": "country not served"}],
                reason="region",
            )

    def _refused(self, reason: str, phone: str, ip: str | None) -> None:
        self._metrics.refused.labels(reason).inc()
        if reason in ("cooldown",):
            return  # an impatient user, not an attack
        log.warning(
            "login code limit reached",
            extra={
                "reason": reason,
                "phone": mask_phone(phone),
                "prefix": otp.prefix_of(phone, self.policy),
                "ip": ip,
            },
        )

    async def _deliver(
        self,
        phone: str,
        role: str,
        code: str,
        sent: Sent,
        before: otp.OtpState,
        issued: otp.OtpState,
        send_id: int,
    ) -> None:
        t0 = time.perf_counter()
        try:
            await self._sms.send_code(phone, code, sent.expires_in)
        except SmsRefused as exc:
            self._metrics.sms.labels("refused").inc()
            await self._undo(phone, role, before, issued, send_id)
            if exc.fault == "recipient":
                raise InvalidParams(
                    "this number cannot receive SMS",
                    fields=[{"field": "phone", "message": "cannot receive SMS"}],
                    reason="undeliverable",
                ) from None
            # Our account, sender or template: an operator must act.
            log.error(
                "sms gateway refused a login code",
                extra={"provider": exc.provider, "error": exc.code, "detail": exc.message},
            )
            raise ServiceUnavailable("login codes cannot be sent right now") from None
        except SmsUnavailable as exc:
            self._metrics.sms.labels("unavailable").inc()
            # It may have gone out: the send stays counted and its code works.
            raise ServiceUnavailable(
                "the SMS gateway did not answer; ask for a code again shortly",
                retryAfterMs=int(1000 * max(exc.retry_after or 0, sent.resend_after, 1)),
            ) from None
        finally:
            self._metrics.sms_seconds.observe(time.perf_counter() - t0)
        self._metrics.sms.labels("sent").inc()

    async def _undo(
        self, phone: str, role: str, before: otp.OtpState, issued: otp.OtpState, send_id: int
    ) -> None:
        """Nothing was sent: the code before comes back, the send counts against no cap."""
        async with self._db.transaction() as conn:
            now_state = _state(await accounts.lock_otp(conn, phone, role))
            if now_state == issued:  # not replaced or used meanwhile
                await accounts.save_otp(conn, phone, role, _row(before))
            await accounts.forget_send(conn, send_id)

    # -- checking --

    async def check(
        self, conn: Executor, phone: str, role: str, code: str, ip: str | None, now: datetime
    ) -> otp.VerifyOutcome:
        """Check ``code`` inside the caller's transaction (a right one is consumed);
        pass the outcome to :meth:`raise_refusal` after the commit."""
        policy = self.policy
        digest = otp.code_digest(self._key, phone, role, code)
        state = _state(await accounts.lock_otp(conn, phone, role))
        by_phone, by_ip = await accounts.count_guesses(
            conn, phone, role, ip, now - policy.guess_window
        )
        outcome = otp.decide_verify(
            state,
            digest,
            now,
            policy,
            ip=ip,
            phone_guesses=_window(by_phone),
            ip_guesses=_window(by_ip),
        )
        if outcome.new_state != state:
            await accounts.save_otp(conn, phone, role, _row(outcome.new_state))
        if isinstance(outcome, otp.Rejected) and outcome.counted:
            await accounts.record_guess(conn, phone, role, ip, now)
        return outcome

    def raise_refusal(self, outcome: otp.VerifyOutcome, phone: str, ip: str | None) -> None:
        if isinstance(outcome, otp.GuessRefused):
            self._refused(outcome.reason, phone, ip)
            raise RateLimited(
                "too many wrong codes; wait before trying again",
                retry_after=outcome.retry_after.total_seconds(),
                reason=outcome.reason,
            )
        if isinstance(outcome, otp.Rejected):
            if outcome.counted:
                self._metrics.wrong_guesses.inc()
            raise InvalidCode(
                "wrong or expired code", reason=outcome.reason, attemptsLeft=outcome.attempts_left
            )


#: The login codes of the auth feature, for features that ask for a fresh code as proof.
LOGIN_CODES: PortKey[LoginCodes] = PortKey("login_codes")


def _window(counted: accounts.Counted) -> otp.Window:
    return otp.Window(counted.count, counted.oldest)


def _state(row: accounts.OtpRow) -> otp.OtpState:
    return otp.OtpState(
        code_digest=row.code_digest,
        expires_at=row.expires_at,
        attempts=row.attempts,
        last_sent_at=row.last_sent_at,
        sent_to_ip=row.sent_to_ip,
    )


def _row(state: otp.OtpState) -> accounts.OtpRow:
    return accounts.OtpRow(
        state.code_digest, state.expires_at, state.attempts, state.last_sent_at, state.sent_to_ip
    )
