"""Login as a feature: codes by SMS, tokens, sessions (``auth.*``), the socket server's
authenticator, and the clean-up of old codes and sessions."""

from __future__ import annotations

from datetime import timedelta

from api.auth.codes import LOGIN_CODES
from api.auth.metrics import AuthMetrics
from api.auth.service import AuthService
from api.auth.settings import AuthSettings
from api.auth.sms import make_sender
from kernel.feature import Feature, Kit
from kernel.identity import AUTHENTICATOR
from storage import accounts


class AuthFeature(Feature):
    name = "auth"
    settings = AuthSettings

    async def install(self, kit: Kit) -> None:
        s = kit.settings(AuthSettings)
        self._settings = s
        self._db = kit.db
        self._clock = kit.clock
        sms = make_sender(s, production=kit.production)
        kit.on_stop(sms.close)
        self.service = AuthService(
            kit.db,
            s,
            jwt_secret=await kit.secret("jwt", s.jwt_secret),
            otp_key=await kit.secret("otp_hmac"),
            clock=kit.clock,
            sms=sms,
            metrics=AuthMetrics(kit.metrics),
            on_revoked=kit.revoke,
            outbox=kit.outbox,
        )
        self.service.register(kit.methods)
        kit.provide(AUTHENTICATOR, self.service)
        kit.provide(LOGIN_CODES, self.service.codes)
        kit.cleanup(self._prune)

    async def _prune(self) -> None:
        """Codes, challenges and sessions past every window that still reads them."""
        s = self._settings
        now = self._clock.now()
        window = max(s.otp_phone_window, s.otp_ip_window, s.otp_prefix_window)
        await accounts.prune_otp(
            self._db,
            sends_before=now - timedelta(seconds=window),
            guesses_before=now - timedelta(seconds=s.otp_guess_window),
        )
        await accounts.prune_otp_challenges(self._db, now)
        await accounts.prune_auth(self._db)
