"""The interface every push provider client implements, and what a send returns."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

from kernel.push import PushNotice
from storage.push import Device


class Outcome(enum.Enum):
    SENT = "sent"
    RETRY = "retry"  # throttled, provider error, network: try again later
    TOKEN_INVALID = "token_invalid"  # the provider says the token is dead: delete it
    REFUSED = "refused"  # will never be accepted as is (too large, our payload's fault)
    AUTH_ERROR = "auth_error"  # our credentials are wrong: alert, delete nothing, retry


@dataclass(frozen=True, slots=True)
class PushMessage:
    """One event to push to one device."""

    user_id: int
    seq: int
    event: str
    notice: PushNotice

    def data(self) -> dict[str, str]:
        """The app's data: the notice's, plus which event it is (strings only: FCM)."""
        return {**self.notice.data, "event": self.event, "seq": str(self.seq)}


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    http_status: int | None = None
    provider_code: str | None = None  # FCM errorCode, APNs reason, "too_large", "network"
    retry_after: float | None = None  # seconds, from the provider's Retry-After
    # APNs 410: when the token stopped being valid (a newer registration is kept).
    invalid_since: datetime | None = None


class PushProvider(Protocol):
    name: str  # "fcm", "apns", "webpush": push_devices.provider

    async def send(self, device: Device, message: PushMessage) -> SendResult: ...

    async def close(self) -> None: ...


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP-date (RFC 9110
    section 10.2.3); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
