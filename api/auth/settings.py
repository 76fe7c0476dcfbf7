"""The ``[auth]`` settings section: one-time codes, access and refresh tokens."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from kernel.settings import Section


class AuthSettings(Section):
    """Login: one-time codes, access and refresh tokens."""

    # Empty: generated at first start and kept in the database, shared by every
    # instance on that database.
    jwt_secret: str = ""
    access_token_ttl: float = Field(900.0, ge=30)
    refresh_token_ttl: float = Field(30 * 86400.0, ge=60)
    default_region: str = Field("IN", min_length=2, max_length=2)
    otp_ttl: float = Field(300.0, ge=30)
    otp_max_attempts: int = Field(5, ge=1)
    otp_lock: float = Field(900.0, ge=0)
    otp_resend_cooldown: float = Field(30.0, ge=0)
    otp_max_per_phone: int = Field(5, ge=1)
    otp_phone_window: float = Field(3600.0, gt=0)
    otp_max_per_ip: int = Field(20, ge=1)
    otp_ip_window: float = Field(3600.0, gt=0)
    # "log": write each code to the log (development). Real gateways come later.
    sms_sender: Literal["log"] = "log"
    # Seconds after a refresh token was rotated during which presenting it again is
    # taken as a retry (the answer was lost on a flaky network), not as theft.
    refresh_retry_grace: float = Field(30.0, ge=0, le=300)

    @field_validator("jwt_secret")
    @classmethod
    def _long_enough(cls, secret: str) -> str:
        if secret and len(secret.encode()) < 32:
            raise ValueError("must be empty (generated) or at least 32 bytes (RFC 7518 3.2)")
        return secret
