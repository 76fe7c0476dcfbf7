"""The ``[auth]`` settings section: one-time codes, access and refresh tokens."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from kernel.settings import Section


class AuthSettings(Section):
    """Login: one-time codes, access and refresh tokens."""

    # Empty: generated at first start and kept in the database, shared by every
    # instance on that database.
    jwt_secret: str = ""
    access_token_ttl: float = Field(900.0, ge=30)
    refresh_token_ttl: float = Field(30 * 86400.0, ge=60)
    default_region: str = Field("IN", min_length=2, max_length=2)
    # One-time codes (the scheme: api/auth/otp.py). A code dies after
    # otp_max_attempts wrong guesses; nothing ever locks a phone.
    otp_ttl: float = Field(300.0, ge=30)
    otp_max_attempts: int = Field(5, ge=1)
    # Wrong guesses per guess window: on one phone from addresses other than the one
    # that asked for its code, and from one address on any phone.
    otp_max_guesses_per_phone: int = Field(10, ge=1)
    otp_max_guesses_per_ip: int = Field(30, ge=1)
    otp_guess_window: float = Field(3600.0, gt=0)
    # Sending: cooldown, and codes sent at most per phone, per client address and per
    # number prefix (the first otp_prefix_digits digits, country code included), each
    # per its window (seconds).
    otp_resend_cooldown: float = Field(30.0, ge=0)
    otp_max_per_phone: int = Field(5, ge=1)
    otp_phone_window: float = Field(3600.0, gt=0)
    otp_max_per_ip: int = Field(20, ge=1)
    otp_ip_window: float = Field(3600.0, gt=0)
    otp_max_per_prefix: int = Field(50, ge=1)
    otp_prefix_window: float = Field(3600.0, gt=0)
    otp_prefix_digits: int = Field(8, ge=4, le=15)
    # Regions (ISO 3166-1 alpha-2) whose numbers may be sent codes: SMS to other
    # countries costs more and is how toll fraud pays.
    sms_regions: list[str] = Field(default_factory=lambda: ["IN"], min_length=1)
    # Who delivers login codes: "log" writes them to the log (development only:
    # refused in production), "msg91" or "twilio" send them by SMS (api/auth/sms/).
    sms_sender: Literal["log", "msg91", "twilio"] = "log"
    # Seconds one call to the SMS gateway may take.
    sms_timeout: float = Field(10.0, gt=0, le=60)
    # MSG91 (flow API, a DLT-approved template holding ##otp##). The authkey is a
    # secret: set it with RTC_AUTH__MSG91_AUTHKEY, never in a file.
    msg91_authkey: str = ""
    msg91_template_id: str = ""
    msg91_sender_id: str = ""  # the DLT header ("BLDXPT"); empty: the template's own
    msg91_code_variable: str = "otp"
    msg91_minutes_variable: str = ""  # empty: the template states no lifetime
    msg91_base_url: str = "https://control.msg91.com"
    # Twilio (Messages API). The auth token is a secret: RTC_AUTH__TWILIO_AUTH_TOKEN.
    # Exactly one of from_number and messaging_service_sid.
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_from_number: str = ""
    twilio_messaging_service_sid: str = ""
    twilio_base_url: str = "https://api.twilio.com"
    twilio_body_template: str = (
        "Your BuildXpert code is {code}. It expires in {minutes} minutes. Do not share it."
    )
    # Seconds after a refresh token was rotated during which presenting it again is
    # taken as a retry (the answer was lost on a flaky network), not as theft.
    refresh_retry_grace: float = Field(30.0, ge=0, le=300)

    @field_validator("jwt_secret")
    @classmethod
    def _long_enough(cls, secret: str) -> str:
        if secret and len(secret.encode()) < 32:
            raise ValueError("must be empty (generated) or at least 32 bytes (RFC 7518 3.2)")
        return secret

    @field_validator("sms_regions")
    @classmethod
    def _regions(cls, regions: list[str]) -> list[str]:
        import phonenumbers

        unknown = [r for r in regions if r not in phonenumbers.SUPPORTED_REGIONS]
        if unknown:
            raise ValueError(f"not regions (ISO 3166-1 alpha-2, upper case): {unknown}")
        return regions

    @model_validator(mode="after")
    def _gateway(self) -> AuthSettings:
        if self.sms_sender == "msg91":
            if not self.msg91_authkey or not self.msg91_template_id:
                raise ValueError(
                    "sms_sender msg91 needs msg91_authkey (RTC_AUTH__MSG91_AUTHKEY) and"
                    " msg91_template_id"
                )
        if self.sms_sender == "twilio":
            if not self.twilio_account_sid or not self.twilio_auth_token:
                raise ValueError(
                    "sms_sender twilio needs twilio_account_sid and twilio_auth_token"
                    " (RTC_AUTH__TWILIO_AUTH_TOKEN)"
                )
            if bool(self.twilio_from_number) == bool(self.twilio_messaging_service_sid):
                raise ValueError(
                    "sms_sender twilio needs exactly one of twilio_from_number and"
                    " twilio_messaging_service_sid"
                )
        return self
