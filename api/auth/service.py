"""Login over the socket: SMS codes, tokens, sessions (methods ``auth.*``).

Rules (pure, in :mod:`api.auth.otp` and :mod:`api.auth.tokens`) meet the database
here. Every code check runs in one transaction holding the row lock of the phone's
code state, so a code is consumed exactly once and concurrent guesses serialize.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID, uuid4

from pydantic import Field

from api.auth import otp, tokens
from api.auth.codes import LoginCodes
from api.auth.metrics import AuthMetrics
from api.auth.settings import AuthSettings
from api.auth.sms import SmsSender
from api.notifications import WELCOME, NotificationType, new_notification, stage_notification
from kernel.clock import Clock
from kernel.errors import (
    Forbidden,
    InvalidCode,
    NotFound,
    Unauthenticated,
)
from kernel.identity import Identity
from kernel.outbox import Outbox, StagedEvents
from kernel.rpc.registry import Access, Caller, Empty, MethodRegistry, Params, Result, UserId
from kernel.rpc.text import FullName
from storage import accounts, admin
from storage.coalesce import Coalesced
from storage.database import Database

log = logging.getLogger("rtc.auth")

Role = Literal["customer", "provider", "admin"]
# Called after sessions are revoked, to close their open sockets (on every instance).
RevokedHook = Callable[[int, list[UUID], str], Awaitable[None]]
# Sessions checked per query by Authenticator.alive.
_ALIVE_BATCH = 5000


# --- Wire models -------------------------------------------------------------------------


class RequestOtp(Params):
    phone: str = Field(min_length=4, max_length=32)
    role: Role


class OtpRequested(Result):
    sent: bool = Field(description="Always true: the answer never tells if an account exists")
    expires_in_seconds: int
    resend_after_seconds: int


class Device(Params):
    device_id: str | None = Field(None, max_length=128)
    platform: Literal["android", "ios", "web", "other"] | None = None
    model: str | None = Field(None, max_length=128)
    app_version: str | None = Field(None, max_length=32)


class VerifyOtp(Params):
    phone: str = Field(min_length=4, max_length=32)
    role: Role
    code: str = Field(pattern=r"^[0-9]{4,8}$")
    full_name: FullName | None = None
    device: Device | None = None


class User(Result):
    id: int
    phone: str
    role: str
    full_name: str | None
    is_verified: bool
    created_at: datetime


class Tokens(Result):
    access_token: str
    refresh_token: str
    access_token_expires_at: datetime
    refresh_token_expires_at: datetime
    session_id: str
    user: User


class Refresh(Params):
    refresh_token: str = Field(min_length=1, max_length=256)


class SessionId(Params):
    session_id: UUID


class Done(Result):
    ok: bool = True
    revoked: int = 0


class SessionInfo(Result):
    session_id: str
    device: dict[str, Any]
    ip: str | None
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    current: bool


class Sessions(Result):
    sessions: list[SessionInfo]


# --- The service -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Rejection:
    error: Exception


class AuthService:
    def __init__(
        self,
        db: Database,
        settings: AuthSettings,
        *,
        jwt_secret: bytes,
        otp_key: bytes,
        clock: Clock,
        sms: SmsSender,
        metrics: AuthMetrics,
        on_revoked: RevokedHook,
        outbox: Outbox,
    ) -> None:
        self._db = db
        self._outbox = outbox
        self._settings = settings
        self._clock = clock
        self._on_revoked = on_revoked
        self._access = tokens.AccessTokens(
            jwt_secret, ttl=timedelta(seconds=int(settings.access_token_ttl))
        )
        self._refresh_ttl = timedelta(seconds=settings.refresh_token_ttl)
        self._retry_grace = timedelta(seconds=settings.refresh_retry_grace)
        # Handshakes arriving together (a reconnect storm) share one query: nothing is
        # cached, each answer comes from a query started after its handshake asked.
        self._session_alive: Coalesced[UUID, bool] = Coalesced(self._sessions_alive, False)
        self.codes = LoginCodes(
            db,
            settings,
            key=otp_key,
            clock=clock,
            sms=sms,
            metrics=metrics,
            may_receive=self._may_receive_code,
        )

    def register(self, registry: MethodRegistry) -> None:
        add = registry.add
        add(
            "auth.requestOtp",
            self.request_otp,
            params=RequestOtp,
            result=OtpRequested,
            access=Access.PUBLIC,
            deadline=self._settings.sms_timeout + 5,  # it waits for the SMS gateway
        )
        add(
            "auth.verifyOtp", self.verify_otp, params=VerifyOtp, result=Tokens, access=Access.PUBLIC
        )
        add("auth.refresh", self.refresh, params=Refresh, result=Tokens, access=Access.PUBLIC)
        add("auth.logout", self.logout, result=Done)
        add("auth.logoutAll", self.logout_all, result=Done)
        add("auth.sessions", self.sessions, result=Sessions)
        add("auth.revokeSession", self.revoke_session, params=SessionId, result=Done)

    # -- codes --

    async def request_otp(self, caller: Caller, params: RequestOtp) -> OtpRequested:
        """Send a 6-digit login code by SMS. Same answer whether or not an account exists."""
        sent = await self.codes.send(self.codes.phone(params.phone), params.role, caller.ip)
        return OtpRequested(
            sent=True, expires_in_seconds=sent.expires_in, resend_after_seconds=sent.resend_after
        )

    async def _may_receive_code(self, conn: Any, phone: str, role: str) -> bool:
        if await admin.phone_blocked(conn, phone):  # removed by an admin: answered alike
            return False
        user = await accounts.find_user(conn, phone, role)
        if role == "admin":
            return user is not None and user.is_active
        return user is None or user.is_active

    async def verify_otp(self, caller: Caller, params: VerifyOtp) -> Tokens:
        """Check the code; on success create the account if new (with its welcome
        notification) and open a session."""
        phone = self.codes.phone(params.phone)
        now = self._clock.now()
        staged = self._outbox.stage()
        async with self._db.transaction() as conn:
            outcome = await self.codes.check(conn, phone, params.role, params.code, caller.ip, now)
            if isinstance(outcome, otp.Accepted):
                result = await self._login(conn, staged, phone, params, caller.ip, now)
        if staged:
            await staged.deliver()
        self.codes.raise_refusal(outcome, phone, caller.ip)  # wrong guesses stay counted
        if isinstance(result, _Rejection):
            raise result.error
        return result

    async def _login(
        self,
        conn: Any,
        staged: StagedEvents,
        phone: str,
        params: VerifyOtp,
        ip: str | None,
        now: datetime,
    ) -> Tokens | _Rejection:
        if await admin.phone_blocked(conn, phone):
            # Removed by an admin: no code was sent for it. Same answer as a bad code.
            return _Rejection(
                InvalidCode("wrong or expired code", reason="no_code", attemptsLeft=0)
            )
        if params.role == "admin":
            user = await accounts.admin_login(conn, phone)
            if user is None:
                # No admin account: its code was never sent. Same answer as a bad code.
                return _Rejection(
                    InvalidCode("wrong or expired code", reason="no_code", attemptsLeft=0)
                )
        else:
            user, created = await accounts.upsert_verified_user(
                conn, phone, params.role, params.full_name
            )
            if created:
                await self._welcome(conn, staged, user, now)
        if not user.is_active:
            return _Rejection(Forbidden("this account is disabled"))
        device = params.device.model_dump(by_alias=True, exclude_none=True) if params.device else {}
        session_id = uuid4()
        refresh = tokens.new_refresh_token()
        refresh_expires = now + self._refresh_ttl
        await accounts.create_session(
            conn,
            session_id,
            user.id,
            device,
            ip,
            refresh_expires,
            tokens.hash_refresh_token(refresh),
        )
        log.info("login", extra={"user": user.id, "role": user.role, "session": str(session_id)})
        return self._tokens(user, session_id, refresh, refresh_expires, now)

    @staticmethod
    async def _welcome(
        conn: Any, staged: StagedEvents, user: accounts.UserRow, now: datetime
    ) -> None:
        """A new account's welcome notification (its first event), with the account."""
        values = {**WELCOME[user.role], "name": user.full_name}
        note = await new_notification(conn, user.id, NotificationType.WELCOME, values, now=now)
        stage_notification(staged, note)
        await staged.write(conn)

    def _tokens(
        self,
        user: accounts.UserRow,
        session_id: UUID,
        refresh: str,
        refresh_expires: datetime,
        now: datetime,
    ) -> Tokens:
        access, claims = self._access.issue(user.id, user.role, session_id, now)
        return Tokens(
            access_token=access,
            refresh_token=refresh,
            access_token_expires_at=claims.expires_at,
            refresh_token_expires_at=refresh_expires,
            session_id=str(session_id),
            user=User(
                id=user.id,
                phone=user.phone,
                role=user.role,
                full_name=user.full_name,
                is_verified=user.is_verified,
                created_at=user.created_at,
            ),
        )

    # -- tokens --

    async def refresh(self, caller: Caller, params: Refresh) -> Tokens:
        """Rotate a refresh token: the old one stops working, a new pair is returned.

        Presenting a token that was already rotated means it leaked (or a client
        misbehaves): the whole session is revoked (RFC 6819 section 5.2.2.3). Except
        within ``refresh_retry_grace`` of its rotation, and only while the token it was
        rotated to was never used: then that answer was most likely lost on the way to
        a phone on a bad network, and the session rotates again (every other token of
        it retired), instead of logging the user out.
        """
        if not tokens.looks_like_refresh_token(params.refresh_token):
            raise Unauthenticated("invalid refresh token", reason="token_invalid")
        old_hash = tokens.hash_refresh_token(params.refresh_token)
        now = self._clock.now()
        async with self._db.transaction() as conn:
            row = await accounts.lock_refresh_token(conn, old_hash)
            if row is None:
                raise Unauthenticated("invalid refresh token", reason="token_invalid")
            # A retry: this token's answer was lost, so the token it was rotated to was
            # never used. A token whose successor was used is a replay, grace or not.
            retry = (
                row.used_at is not None
                and row.successor_unused
                and now - row.used_at <= self._retry_grace
            )
            if row.used_at is not None and not retry:
                revoked = await accounts.revoke_sessions(
                    conn, row.user_id, "refresh_token_reuse", row.session_id
                )
                reuse = True
            else:
                reuse = False
                if (
                    row.session_revoked_at is not None
                    or row.token_expires_at <= now
                    or not row.user_active
                ):
                    raise Unauthenticated("session ended; log in again", reason="session_revoked")
                new_refresh = tokens.new_refresh_token()
                expires = now + self._refresh_ttl
                await accounts.rotate_refresh_token(
                    conn,
                    old_hash,
                    tokens.hash_refresh_token(new_refresh),
                    row.session_id,
                    expires,
                    now,
                )
                user = await accounts.get_user(conn, row.user_id)
        if reuse:
            log.warning(
                "refresh token reuse: session revoked",
                extra={"user": row.user_id, "session": str(row.session_id)},
            )
            await self._revoked(row.user_id, revoked, "refresh token reused")
            raise Unauthenticated("refresh token already used; log in again", reason="token_reused")
        assert user is not None
        return self._tokens(user, row.session_id, new_refresh, expires, now)

    async def authenticate(self, access_token: str) -> Identity:
        """The :class:`rtc_server.auth.Authenticator` of sockets."""
        try:
            claims = self._access.verify(access_token, self._clock.now())
        except tokens.TokenExpired:
            raise Unauthenticated("access token expired", reason="token_expired") from None
        except tokens.TokenError:
            raise Unauthenticated("invalid access token", reason="token_invalid") from None
        if not await self._session_alive.get(claims.session_id):
            raise Unauthenticated("session ended; log in again", reason="session_revoked")
        return Identity(
            user_id=UserId(claims.user_id),
            role=claims.role,
            session_id=claims.session_id,
            expires_at=claims.expires_at.timestamp(),
        )

    async def _sessions_alive(self, session_ids: list[UUID]) -> dict[UUID, bool]:
        return dict.fromkeys(await accounts.sessions_alive(self._db, session_ids), True)

    async def alive(self, session_ids: Collection[UUID]) -> set[UUID]:
        alive: set[UUID] = set()
        ids = list(session_ids)
        for start in range(0, len(ids), _ALIVE_BATCH):
            alive |= await accounts.sessions_alive(self._db, ids[start : start + _ALIVE_BATCH])
        return alive

    # -- sessions --

    async def logout(self, caller: Caller, params: Empty) -> Done:
        """End this socket's session: its refresh token stops working, its sockets close."""
        user_id = caller.require_user()
        assert caller.session_id is not None
        revoked = await accounts.revoke_sessions(self._db, user_id, "logout", caller.session_id)
        await self._revoked(user_id, revoked, "logged out")
        return Done(revoked=len(revoked))

    async def logout_all(self, caller: Caller, params: Empty) -> Done:
        """End every session of this account, on every device."""
        user_id = caller.require_user()
        revoked = await accounts.revoke_sessions(self._db, user_id, "logout_all")
        await self._revoked(user_id, revoked, "logged out everywhere")
        return Done(revoked=len(revoked))

    async def sessions(self, caller: Caller, params: Empty) -> Sessions:
        """The account's live sessions (devices), newest use first."""
        rows = await accounts.list_sessions(self._db, caller.require_user())
        return Sessions(
            sessions=[
                SessionInfo(
                    session_id=str(r.id),
                    device=r.device,
                    ip=r.ip,
                    created_at=r.created_at,
                    last_used_at=r.last_used_at,
                    expires_at=r.expires_at,
                    current=r.id == caller.session_id,
                )
                for r in rows
            ]
        )

    async def revoke_session(self, caller: Caller, params: SessionId) -> Done:
        """End one of the account's sessions (e.g. a lost phone)."""
        user_id = caller.require_user()
        revoked = await accounts.revoke_sessions(self._db, user_id, "revoked", params.session_id)
        if not revoked:
            raise NotFound("no such live session")
        await self._revoked(user_id, revoked, "session revoked")
        return Done(revoked=len(revoked))

    async def _revoked(self, user_id: int, session_ids: list[UUID], reason: str) -> None:
        if session_ids:
            await self._on_revoked(user_id, session_ids, reason)
