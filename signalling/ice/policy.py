"""The ICE policy of a call and the ICE servers (STUN, TURN with coturn's REST
credentials) its parties are given."""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
from dataclasses import dataclass


class Policy(enum.StrEnum):
    OPEN = "open"
    RELAY_ONLY = "relay-only"


@dataclass(frozen=True, slots=True)
class IceServer:
    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


def turn_credentials(secret: str, user_id: int, *, now: float, ttl: float) -> tuple[str, str]:
    """coturn REST credentials valid until ``now + ttl`` (Unix seconds)."""
    username = f"{int(now + ttl)}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers(
    *,
    stun_urls: tuple[str, ...],
    turn_urls: tuple[str, ...],
    turn_secret: str,
    user_id: int,
    now: float,
    ttl: float,
) -> list[IceServer]:
    """What one user's peer connection is configured with."""
    servers = []
    if stun_urls:
        servers.append(IceServer(stun_urls))
    if turn_urls:
        username, credential = turn_credentials(turn_secret, user_id, now=now, ttl=ttl)
        servers.append(IceServer(turn_urls, username, credential))
    return servers
