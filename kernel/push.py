"""What a push says and when it is sent: :class:`PushNotice` and :class:`PushPolicy`.

Domain code attaches a policy to an event it publishes; the core stores the notice in
the push job, so delivery never needs the domain again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Category = Literal["bookings", "calls", "payments", "reminders", "promotional"]
CATEGORIES: tuple[Category, ...] = ("bookings", "calls", "payments", "reminders", "promotional")
Urgency = Literal["high", "normal"]


@dataclass(frozen=True, slots=True)
class PushNotice:
    """The notification a device shows (or, for a call, the app rings on).

    ``collapse_key`` groups updates of one thing (a booking): a device shows only the
    newest notice of a key (FCM collapse_key / APNs apns-collapse-id / Web Push Topic).
    ``ttl``: seconds a provider keeps trying an offline device (a call: its ring time).
    ``data`` reaches the app as strings (FCM's rule), with ``event`` and ``seq`` added.
    """

    title: str
    body: str
    category: Category
    collapse_key: str | None = None
    urgency: Urgency = "normal"
    ttl: int = 86400
    call: bool = False  # an incoming call: high priority, short ttl, the app rings
    data: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> PushNotice:
        return cls(**raw)


@dataclass(frozen=True, slots=True)
class PushPolicy:
    """When to push an event, and what.

    ``wait_for_ack``: seconds a user with a live socket has to acknowledge the event
    before it is pushed (None: ``push.ack_timeout``); a user with no live socket is
    pushed at once. ``immediate``: push at once in any case (incoming calls).
    """

    notice: PushNotice
    wait_for_ack: float | None = None
    immediate: bool = False

    @classmethod
    def call(cls, title: str, body: str, *, ring_seconds: int, call_id: str) -> PushPolicy:
        """An incoming call: at once, high priority, kept only while it rings."""
        return cls(
            PushNotice(
                title,
                body,
                "calls",
                collapse_key=f"call:{call_id}",
                urgency="high",
                ttl=max(1, ring_seconds),
                call=True,
                data={"callId": call_id},
            ),
            immediate=True,
        )

    @classmethod
    def missed_call(cls, title: str, body: str, *, call_id: str) -> PushPolicy:
        """A missed call: a normal notification replacing the ringing one."""
        return cls(
            PushNotice(
                title, body, "calls", collapse_key=f"call:{call_id}", data={"callId": call_id}
            ),
        )
