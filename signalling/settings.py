"""The ``[calls]`` settings section: who may call, ringing, busy, limits, ICE and TURN."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from kernel.settings import Section


class CallSettings(Section):
    """Masked calls: who may call, ringing, busy, limits, ICE and TURN (signalling/)."""

    # Booking statuses during which its customer and provider may call each other.
    booking_statuses: tuple[
        Literal["pending", "accepted", "rejected", "in_progress", "completed", "cancelled"], ...
    ] = ("pending", "accepted", "in_progress")
    # Calls one user may start per rolling minute.
    max_starts_per_minute: int = Field(5, ge=1)
    # Seconds a call rings before it ends as missed.
    ring_timeout: float = Field(30.0, gt=0)
    # Users of these roles in a call are busy for a second one (others may take several).
    busy_roles: tuple[Literal["customer", "provider"], ...] = ("customer", "provider")
    # Calls in progress started through this instance, at most.
    max_active_per_instance: int = Field(1000, ge=1)
    # Seconds a party's dropped socket has to come back (calls.resume) before the call
    # ends as disconnected.
    reconnect_grace: float = Field(20.0, ge=0)
    # Seconds between sweeps for ringing deadlines and expired graces (any instance
    # ends any call: the state is in PostgreSQL).
    sweep_interval: float = Field(0.5, gt=0)
    # Seconds between checks that each party of a call in progress still has a socket
    # on some instance (bus.online): one that has none (its instance was killed before
    # it could record the drop) starts its reconnect grace.
    presence_check_interval: float = Field(10.0, gt=0)
    # Largest SDP description relayed, in bytes.
    max_sdp_bytes: int = Field(16384, ge=1024, le=60000)
    # "auto": relay-only when TURN is configured, else open. "relay-only" needs TURN.
    policy: Literal["auto", "open", "relay-only"] = "auto"
    stun_urls: tuple[str, ...] = ()
    # TURN servers (e.g. "turn:turn.example.com:3478?transport=udp") sharing
    # turn_secret with the server (coturn: use-auth-secret, static-auth-secret).
    turn_urls: tuple[str, ...] = ()
    turn_secret: str = ""
    # Seconds TURN credentials stay valid.
    turn_ttl: float = Field(3600.0, ge=60)
    # Minutes of call events admin.calls.watch replays first (at most 1000 events).
    admin_replay_minutes: float = Field(10.0, ge=0)
    # Seconds after a call's end during which each party may report it (calls.report).
    report_window: float = Field(86400.0, gt=0)

    @field_validator("stun_urls", "turn_urls")
    @classmethod
    def _ice_scheme(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            if not url.startswith(("stun:", "stuns:", "turn:", "turns:")):
                raise ValueError(f"{url!r}: must start with stun:, stuns:, turn: or turns:")
        return urls

    @model_validator(mode="after")
    def _turn_complete(self) -> CallSettings:
        if self.turn_urls and len(self.turn_secret.encode()) < 16:
            raise ValueError("turn_urls need turn_secret (at least 16 bytes)")
        if self.policy == "relay-only" and not self.turn_urls:
            raise ValueError("policy relay-only needs turn_urls and turn_secret")
        return self

    @property
    def effective_policy(self) -> Literal["open", "relay-only"]:
        if self.policy == "auto":
            return "relay-only" if self.turn_urls else "open"
        return self.policy
