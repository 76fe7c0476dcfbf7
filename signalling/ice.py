"""ICE configuration for clients and the address-privacy filter of what is relayed.

TURN credentials follow coturn's REST API scheme ("TURN REST API", draft-uberti-
behave-turn-rest-00, coturn's ``use-auth-secret``): ``username = "<expiry>:<userId>"``
with ``expiry`` in Unix seconds, ``credential = base64(HMAC-SHA1(secret, username))``.
coturn recomputes the credential from its copy of the secret: nothing is stored.

Policies:

- ``relay-only``: clients are told ``iceTransportPolicy: "relay"`` and the server
  strips every host, server-reflexive and peer-reflexive candidate from what it
  relays (trickled candidates and ``a=candidate`` lines of descriptions), blanks the
  related address of relay candidates and the connection addresses of descriptions,
  so each peer only ever sees TURN relay addresses.
- ``open``: everything is relayed as sent; peers learn each other's addresses.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
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


# RFC 8839 section 5.1: candidate:<foundation> <component-id> <transport> <priority>
# <connection-address> <port> typ <cand-type> [extensions]. The "candidate:" prefix is
# optional here (some stacks send the attribute value without it).
_CANDIDATE = re.compile(
    r"^(?:a=)?(?:candidate:)?[A-Za-z0-9+/]{1,32} \d{1,3} (?:udp|tcp|UDP|TCP) \d{1,10} "
    r"[A-Za-z0-9.:\-]{1,255} \d{1,5} typ (host|srflx|prflx|relay)(?: [\x21-\x7e ]*)?$"
)
MAX_CANDIDATE = 1024


def candidate_type(candidate: str) -> str | None:
    """The candidate's type (host, srflx, prflx, relay), or None if it is not one."""
    if len(candidate) > MAX_CANDIDATE:
        return None
    match = _CANDIDATE.match(candidate)
    return match.group(1) if match else None


def relayable_candidate(candidate: str, policy: Policy) -> bool:
    """Whether a valid candidate may reach the other peer under ``policy``."""
    return policy is Policy.OPEN or candidate_type(candidate) == "relay"


_RELATED = re.compile(r" raddr \S+ rport \d+")


def private_candidate(candidate: str) -> str:
    """A relay candidate without its related address: ``raddr``/``rport`` name the
    peer's own (server-reflexive or host) address, so they become ``0.0.0.0 0`` as
    browsers do when they hide addresses (RFC 8839 section 5.1 allows any value)."""
    return _RELATED.sub(" raddr 0.0.0.0 rport 0", candidate)


_CONNECTION_LINE = re.compile(r"^c=IN (IP4|IP6) \S+$")
_RTCP_LINE = re.compile(r"^a=rtcp:(\d+) IN (IP4|IP6) \S+$")


def filter_sdp(sdp: str, policy: Policy) -> str:
    """The description as relayed under ``policy``.

    relay-only: ``a=candidate`` lines other than relay ones are removed, relay ones
    lose their related address (:func:`private_candidate`), and the
    addresses of ``c=`` and ``a=rtcp`` lines (a stack puts its default candidate
    there) become ``0.0.0.0`` / ``::`` (RFC 8839 section 4.2.1.1: the placeholder
    when no candidate is known yet).
    """
    if policy is Policy.OPEN:
        return sdp
    newline = "\r\n" if "\r\n" in sdp else "\n"
    kept = []
    for line in sdp.split(newline):
        if line.startswith("a=candidate:"):
            if candidate_type(line[2:]) != "relay":
                continue
            line = private_candidate(line)
        connection = _CONNECTION_LINE.match(line)
        if connection:
            line = f"c=IN {connection.group(1)} {_blank(connection.group(1))}"
        rtcp = _RTCP_LINE.match(line)
        if rtcp:
            line = f"a=rtcp:{rtcp.group(1)} IN {rtcp.group(2)} {_blank(rtcp.group(2))}"
        kept.append(line)
    return newline.join(kept)


def _blank(family: str) -> str:
    return "0.0.0.0" if family == "IP4" else "::"
