"""Login as a feature: codes by SMS, tokens, sessions (``auth.*``), the socket server's
authenticator, and the clean-up of old codes and sessions."""

from __future__ import annotations

from datetime import timedelta

from api.auth.service import AuthService, LogSmsSender, SmsSender
from api.auth.settings import AuthSettings
from kernel.feature import Feature, Kit
from kernel.identity import AUTHENTICATOR
from storage import accounts


def sms_sender(settings: AuthSettings) -> SmsSender:
    """The gateway that sends login codes (``auth.sms_sender``)."""
    match settings.sms_sender:
        case "log":
            return LogSmsSender()


class AuthFeature(Feature):
    name = "auth"
    settings = AuthSettings

    async def install(self, kit: Kit) -> None:
        s = kit.settings(AuthSettings)
        self._settings = s
        self._db = kit.db
        self._clock = kit.clock
        self.service = AuthService(
            kit.db,
            s,
            jwt_secret=await kit.secret("jwt", s.jwt_secret),
            otp_key=await kit.secret("otp_hmac"),
            clock=kit.clock,
            sms=sms_sender(s),
            on_revoked=kit.revoke,
        )
        self.service.register(kit.methods)
        kit.provide(AUTHENTICATOR, self.service)
        kit.cleanup(self._prune)

    async def _prune(self) -> None:
        """Codes, challenges and sessions past every window that still reads them."""
        s = self._settings
        now = self._clock.now()
        window = max(s.otp_phone_window, s.otp_ip_window)
        await accounts.prune_otp(self._db, now - timedelta(seconds=window))
        await accounts.prune_otp_challenges(self._db, now)
        await accounts.prune_auth(self._db)
