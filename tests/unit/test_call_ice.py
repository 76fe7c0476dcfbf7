"""ICE configuration and address privacy: coturn REST credentials, candidate syntax,
what relay-only strips from candidates and descriptions."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from signalling.ice import (
    IceServer,
    Policy,
    candidate_type,
    filter_sdp,
    ice_servers,
    private_candidate,
    relayable_candidate,
    turn_credentials,
)

HOST = "candidate:1 1 udp 2130706431 192.168.1.20 50000 typ host"
SRFLX = "candidate:2 1 udp 1694498815 203.0.113.7 40000 typ srflx raddr 192.168.1.20 rport 50000"
RELAY = "candidate:3 1 udp 16777215 198.51.100.9 61000 typ relay raddr 203.0.113.7 rport 40000"
PRFLX = "candidate:4 1 tcp 1853824767 203.0.113.7 9 typ prflx tcptype active"


def test_turn_credentials_are_coturns_rest_format() -> None:
    username, credential = turn_credentials("s3cret-s3cret-s3cret", 42, now=1000.4, ttl=3600)
    assert username == "4600:42"
    expected = hmac.new(b"s3cret-s3cret-s3cret", b"4600:42", hashlib.sha1).digest()
    assert base64.b64decode(credential) == expected


def test_ice_servers_carry_stun_then_turn_with_credentials() -> None:
    servers = ice_servers(
        stun_urls=("stun:stun.example.com:3478",),
        turn_urls=("turn:turn.example.com:3478?transport=udp",),
        turn_secret="x" * 16,
        user_id=7,
        now=0,
        ttl=60,
    )
    assert servers[0] == IceServer(("stun:stun.example.com:3478",))
    assert servers[1].urls == ("turn:turn.example.com:3478?transport=udp",)
    assert servers[1].username == "60:7" and servers[1].credential
    assert ice_servers(stun_urls=(), turn_urls=(), turn_secret="", user_id=7, now=0, ttl=60) == []


@pytest.mark.parametrize(
    ("candidate", "kind"),
    [
        (HOST, "host"),
        (SRFLX, "srflx"),
        (RELAY, "relay"),
        (PRFLX, "prflx"),
        ("a=" + HOST, "host"),
        (HOST.removeprefix("candidate:"), "host"),
        ("candidate:1 1 udp 2130706431 fe80::1 50000 typ host", "host"),
        ("candidate:1 1 udp 2130706431 4bf0-4c3e.local 50000 typ host", "host"),
        ("", None),
        ("hello", None),
        ("candidate:1 1 udp 2130706431 192.168.1.20 50000 typ bogus", None),
        ("candidate:1 1 sctp 2130706431 192.168.1.20 50000 typ host", None),
        ("candidate:1 1 udp 1 192.168.1.20 50000 typ host\r\na=evil", None),
        (HOST + " x" * 600, None),
    ],
)
def test_candidate_syntax(candidate: str, kind: str | None) -> None:
    assert candidate_type(candidate) == kind


def test_relay_only_relays_relay_candidates_only() -> None:
    assert [relayable_candidate(c, Policy.RELAY_ONLY) for c in (HOST, SRFLX, PRFLX, RELAY)] == [
        False,
        False,
        False,
        True,
    ]
    assert all(relayable_candidate(c, Policy.OPEN) for c in (HOST, SRFLX, PRFLX, RELAY))


SDP = "\r\n".join(
    [
        "v=0",
        "o=- 3900000000 3900000000 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "m=audio 50000 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 192.168.1.20",
        "a=rtcp:9 IN IP4 192.168.1.20",
        "a=" + HOST,
        "a=" + SRFLX,
        "a=" + RELAY,
        "a=end-of-candidates",
        "",
    ]
)


def test_relay_only_strips_addresses_from_descriptions() -> None:
    filtered = filter_sdp(SDP, Policy.RELAY_ONLY)
    assert "192.168.1.20 50000 typ host" not in filtered
    assert "typ srflx" not in filtered
    relay = "a=candidate:3 1 udp 16777215 198.51.100.9 61000 typ relay raddr 0.0.0.0 rport 0"
    assert relay in filtered  # the related address was the peer's public one
    assert "c=IN IP4 0.0.0.0" in filtered and "a=rtcp:9 IN IP4 0.0.0.0" in filtered
    assert "192.168.1.20" not in filtered and "203.0.113.7" not in filtered
    assert filtered.endswith("a=end-of-candidates\r\n")
    assert filter_sdp(SDP, Policy.OPEN) == SDP


def test_relay_candidates_lose_their_related_address() -> None:
    assert private_candidate(RELAY) == (
        "candidate:3 1 udp 16777215 198.51.100.9 61000 typ relay raddr 0.0.0.0 rport 0"
    )
    assert candidate_type(private_candidate(RELAY)) == "relay"
