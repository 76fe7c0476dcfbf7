"""ICE configuration and address privacy: coturn REST credentials, candidate syntax,
what relay-only keeps of candidates and descriptions (parsed, then rebuilt from an
allow-list), the bypasses a security review found, and real browsers' descriptions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
from aiortc import sdp as aiortc_sdp

from signalling.ice import (
    IceServer,
    Policy,
    candidate_type,
    filter_candidate,
    filter_sdp,
    ice_servers,
    is_ice_ufrag,
    is_mid,
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


# --- The bypasses of the security review: each once hid an address from the filter ----


def sdp(*lines: str, ending: str = "\r\n") -> str:
    return ending.join(lines) + ending


HEAD = ("v=0", "o=- 3900000000 2 IN IP4 127.0.0.1", "s=-", "t=0 0")
AUDIO = "m=audio 9 UDP/TLS/RTP/SAVPF 111"


def test_the_o_line_keeps_no_address_nor_username() -> None:
    filtered = filter_sdp(
        sdp("v=0", "o=192.168.1.20 3900000000 2 IN IP4 192.168.1.20", "s=-", "t=0 0", AUDIO),
        Policy.RELAY_ONLY,
    )
    assert "o=- 3900000000 2 IN IP4 127.0.0.1\r\n" in filtered
    assert "192.168.1.20" not in filtered
    ipv6 = filter_sdp(sdp("v=0", "o=- x 2 IN IP6 2001:db8::20", "s=-", "t=0 0"), Policy.RELAY_ONLY)
    assert "o=- 0 2 IN IP4 127.0.0.1\r\n" in ipv6 and "2001:db8" not in ipv6


def test_mixed_line_endings_are_lines_all_the_same() -> None:
    # The old filter split on CRLF when it saw one, so a line ending in a bare LF hid
    # inside its neighbour.
    mixed = "\r\n".join(HEAD) + "\r\n" + AUDIO + "\nc=IN IP4 192.168.1.20\na=" + HOST + "\r\n"
    filtered = filter_sdp(mixed, Policy.RELAY_ONLY)
    assert "192.168.1.20" not in filtered and "c=IN IP4 0.0.0.0\r\n" in filtered
    assert "\n" not in filtered.replace("\r\n", "")  # rebuilt with CRLF only
    lf_only = filter_sdp(sdp(*HEAD, AUDIO, "c=IN IP4 192.168.1.20", ending="\n"), Policy.OPEN)
    assert lf_only == sdp(*HEAD, AUDIO, "c=IN IP4 192.168.1.20")


def test_a_c_line_with_trailing_whitespace_is_still_a_c_line() -> None:
    for trailing in (" ", "  ", "\t", " \t "):
        filtered = filter_sdp(
            sdp(*HEAD, AUDIO, "c=IN IP4 192.168.1.20" + trailing, "a=rtcp:9 IN IP4 10.0.0.5 "),
            Policy.RELAY_ONLY,
        )
        assert "192.168.1.20" not in filtered and "10.0.0.5" not in filtered
        assert "c=IN IP4 0.0.0.0\r\n" in filtered and "a=rtcp:9 IN IP4 0.0.0.0\r\n" in filtered


def test_remote_candidates_are_not_relayed() -> None:
    # RFC 8839 section 5.2: a controlling agent's view of the other side's candidates;
    # no WebRTC peer needs it, and it names addresses.
    filtered = filter_sdp(
        sdp(*HEAD, AUDIO, "a=remote-candidates:1 192.168.1.20 50000 2 192.168.1.20 50001"),
        Policy.RELAY_ONLY,
    )
    assert "remote-candidates" not in filtered and "192.168.1.20" not in filtered


def test_a_relay_candidate_with_raddr_but_no_rport_loses_its_related_address() -> None:
    lone_raddr = "candidate:3 1 udp 16777215 198.51.100.9 61000 typ relay raddr 203.0.113.7"
    hidden = "candidate:3 1 udp 16777215 198.51.100.9 61000 typ relay raddr 0.0.0.0 rport 0"
    assert private_candidate(lone_raddr) == hidden
    lone_rport = "candidate:3 1 udp 16777215 198.51.100.9 61000 typ relay rport 40000"
    assert private_candidate(lone_rport) == hidden
    assert private_candidate(lone_raddr + " generation 0") == hidden + " generation 0"
    filtered = filter_sdp(sdp(*HEAD, AUDIO, "a=" + lone_raddr), Policy.RELAY_ONLY)
    assert "a=" + hidden + "\r\n" in filtered and "203.0.113.7" not in filtered


# --- Parse, then rebuild from the allow-list -------------------------------------------


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "starts with v=, o= and s="),
        ("v=0\r\n", "starts with v=, o= and s="),
        (sdp("v=0", "s=-", "o=- 1 1 IN IP4 0.0.0.0", "t=0 0"), "starts with v=, o= and s="),
        (sdp("v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", AUDIO), "t= line"),
        (sdp("v=1", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0"), "v= is 0"),
        (sdp(*HEAD, "o=- 2 2 IN IP4 0.0.0.0"), "appear once"),
        (sdp(*HEAD, AUDIO, "t=0 0"), "before the first m="),
        (sdp("v=0", "o=- 1 IN IP4 0.0.0.0", "s=-", "t=0 0"), "o= has six fields"),
        (sdp(*HEAD, "m=audio 9 UDP/TLS/RTP/SAVPF"), "m= is"),
        (sdp(*HEAD, "m=audio 70000 UDP/TLS/RTP/SAVPF 111"), "m= is"),
        (sdp(*HEAD, "m=audio 9 UDP/TLS/RTP/SAVPF 1.2.3.4"), "m= is"),
        (sdp(*HEAD, "a=x\x00y"), "control character"),
        (sdp(*HEAD, "a=ice-ufrag:\tabcd"), "control character"),
        (sdp(*HEAD, "a=x\ry"), "control character"),  # a lone CR ends no line
        (sdp(*HEAD, "a=x\x85y"), "control character"),
        (sdp(*HEAD, " a=sendrecv"), "not <type>=<value>"),
        (sdp(*HEAD, "A=sendrecv"), "not <type>=<value>"),
        (sdp(*HEAD, "sendrecv"), "not <type>=<value>"),
        (sdp(*HEAD, "a=" + "x" * 3000), "longer than"),
        (sdp(*HEAD) + "a=sendrecv\r\n" * 7000, "at most"),
    ],
)
def test_descriptions_that_do_not_parse_are_refused(text: str, why: str) -> None:
    for policy in Policy:
        with pytest.raises(ValueError, match=why):
            filter_sdp(text, policy)


def test_only_allowed_lines_and_attributes_survive() -> None:
    filtered = filter_sdp(
        sdp(
            "v=0",
            "o=- 1 1 IN IP4 0.0.0.0",
            "s=My call from 192.168.1.20",
            "i=about 192.168.1.20",
            "u=http://192.168.1.20/",
            "e=me@192.168.1.20",
            "p=+1 555 0100",
            "b=AS:256",
            "b=X-NOTE:192.168.1.20",
            "t=0 0",
            "r=604800 3600 0 90000",
            "z=2882844526 -1h",
            "k=clear:192.168.1.20",
            "x=192.168.1.20",
            "a=tool:192.168.1.20",
            AUDIO,
            "i=audio",
            "a=label:192.168.1.20",
            "a=ssrc:1 cname:user@192.168.1.20",
            "a=ssrc:1 label:x",
            "a=ssrc:1 cname:abc",
            "a=extmap:9 http://192.168.1.20/ext",
            "a=fmtp:111 minptime=10;note=192.168.1.20",
            "a=rtpmap:111 opus/48000/2",
            "a=sendrecv",
            "a=sendrecv:extra",
            "a=setup:actpass",
            "a=setup:192.168.1.20",
        ),
        Policy.RELAY_ONLY,
    )
    assert filtered == sdp(
        "v=0",
        "o=- 1 1 IN IP4 127.0.0.1",
        "s=-",
        "b=AS:256",
        "t=0 0",
        AUDIO,
        "a=ssrc:1 cname:abc",
        "a=rtpmap:111 opus/48000/2",
        "a=sendrecv",
        "a=setup:actpass",
    )


def test_fingerprints_must_be_as_long_as_their_hash() -> None:
    sha256 = ":".join(["AB"] * 32)
    kept = filter_sdp(sdp(*HEAD, f"a=fingerprint:sha-256 {sha256}"), Policy.RELAY_ONLY)
    assert f"a=fingerprint:sha-256 {sha256}\r\n" in kept
    for bad in (":".join(["AB"] * 31), sha256 + ":20:01", "2001:db8::1", "sha-256"):
        refused = filter_sdp(sdp(*HEAD, f"a=fingerprint:sha-256 {bad}"), Policy.RELAY_ONLY)
        assert "fingerprint" not in refused


@pytest.mark.parametrize(
    ("candidate", "relayed"),
    [
        (HOST, None),
        (SRFLX, None),
        (PRFLX, None),
        ("candidate:1 1 udp 2130706431 4bf0-4c3e.local 50000 typ host", None),
        # An mDNS name is the sender's own host, whatever it claims to be.
        ("candidate:3 1 udp 16777215 4bf0-4c3e.local 61000 typ relay", None),
        (
            "a=candidate:3 1 udp 16777215 198.51.100.9 61000 typ relay raddr 192.168.1.20 "
            "rport 5 generation 0 ufrag EsAw network-id 1 network-cost 10 x-addr 10.0.0.5",
            "candidate:3 1 udp 16777215 198.51.100.9 61000 typ relay raddr 0.0.0.0 rport 0 "
            "generation 0 ufrag EsAw network-id 1 network-cost 10",
        ),
        (
            "3 1 UDP 16777215 2001:db8::9 61000 typ relay  raddr  2001:db8::20  rport 5",
            "3 1 UDP 16777215 2001:db8::9 61000 typ relay raddr 0.0.0.0 rport 0",
        ),
        (
            "candidate:3 1 tcp 16777215 198.51.100.9 9 typ relay tcptype active generation x",
            "candidate:3 1 tcp 16777215 198.51.100.9 9 typ relay raddr 0.0.0.0 rport 0 "
            "tcptype active",
        ),
    ],
)
def test_trickled_candidates_are_rebuilt_relay_ones_only(
    candidate: str, relayed: str | None
) -> None:
    assert filter_candidate(candidate, Policy.RELAY_ONLY) == relayed
    assert relayable_candidate(candidate, Policy.RELAY_ONLY) is (relayed is not None)
    if relayed is None:
        with pytest.raises(ValueError, match="only TURN relay candidates"):
            private_candidate(candidate)
    else:
        assert private_candidate(candidate) == relayed


@pytest.mark.parametrize(
    "candidate",
    [
        "candidate:1 1 udp 2130706431 192.168.1.20 50000 typ host generation",  # no value
        "candidate:1 1 udp 2130706431 192.168.1.20 50000 typ relay raddr 10.0.0.5:80",
        "candidate:1 1 udp 2130706431 192.168.1.20 50000 typ relay rport 99999",
        "candidate:1 1 udp 2130706431 192.168.1.20 70000 typ host",
        "candidate:1 1 udp 2130706431 192.168.1.20/24 50000 typ host",
        "candidate:3 1 udp 16777215 fe80::1%eth0 61000 typ relay",  # no zones on the wire
        "candidate:1.2 1 udp 2130706431 192.168.1.20 50000 typ host",
        "candidate:1 1 udp 2130706431 192.168.1.20 50000 type host",
        "candidate:1 1 udp 2130706431 192.168.1.20 50000 typ host\x00",
        "candidate:1 1 udp 2130706431 192.168.1.20 50000 typ host\tgeneration 0",
        "candidate:1 1 udp 2130706431 192.168.1.20 50000 typ host généra 0",
    ],
)
def test_malformed_candidates_are_refused(candidate: str) -> None:
    assert candidate_type(candidate) is None
    for policy in Policy:
        assert not relayable_candidate(candidate, policy)
        with pytest.raises(ValueError):
            filter_candidate(candidate, policy)
    with pytest.raises(ValueError):
        private_candidate(candidate)


def test_mids_and_username_fragments_cannot_spell_an_address() -> None:
    # For the other fields of a trickled candidate (sdpMid, usernameFragment).
    assert is_mid("0") and is_mid("sdparta_1") and is_mid("{7a6b5c4d-3e2f}")
    assert not any(is_mid(m) for m in ("", "192.168.1.20", "fe80::1", "a.local", "x" * 65))
    assert is_ice_ufrag("Nq3X") and is_ice_ufrag("5b1e8c2a+/")
    assert not any(is_ice_ufrag(u) for u in ("abc", "192.168.1.20", "a:b:c:d", "a b c d"))


def test_open_relays_every_candidate_rebuilt_as_sent() -> None:
    for candidate in (HOST, SRFLX, RELAY, PRFLX, "candidate:1 1 udp 1 4bf0.local 5 typ host"):
        assert filter_candidate(candidate, Policy.OPEN) == candidate
    assert filter_candidate(HOST + " x-leak 10.0.0.5", Policy.OPEN) == HOST
    assert filter_candidate("a=" + HOST, Policy.OPEN) == HOST


# --- Real browsers' descriptions stay usable -------------------------------------------

# Chromium's offer once gathering ended (Unified Plan, BUNDLE, trickle ICE, mDNS host
# candidates), written after Chrome 12x output.
CHROME_OFFER = sdp(
    "v=0",
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0 1 2",
    "a=extmap-allow-mixed",
    "a=msid-semantic: WMS 6e3cd8b1-4b3a-4e0e-8d6c-2f3a5c1b9a77",
    "m=audio 61000 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
    "c=IN IP4 198.51.100.9",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=candidate:2999745851 1 udp 2122260223 4b2e9a41-6a8c-4f61-9d0e-2c1a3f5e7b9d.local 54400 "
    "typ host generation 0 network-id 1 network-cost 10",
    "a=candidate:1467250027 1 udp 2122194687 2001:db8::20 54401 typ host generation 0 "
    "network-id 2 network-cost 10",
    "a=candidate:842163049 1 udp 1686052607 203.0.113.7 54400 typ srflx raddr 0.0.0.0 rport 0 "
    "generation 0 network-id 1 network-cost 10",
    "a=candidate:3745019393 1 udp 41885439 198.51.100.9 61000 typ relay raddr 203.0.113.7 "
    "rport 54400 generation 0 network-id 1 network-cost 10",
    "a=candidate:4233069003 1 tcp 1518280447 4b2e9a41-6a8c-4f61-9d0e-2c1a3f5e7b9d.local 9 "
    "typ host tcptype active generation 0 network-id 1 network-cost 10",
    "a=ice-ufrag:Nq3X",
    "a=ice-pwd:YH8cK7o0s0cXvYyG5N3VjC1a",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:"
    "C2:43:F0:A1:58:D0:A1:2C:19:08",
    "a=setup:actpass",
    "a=mid:0",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=sendrecv",
    "a=msid:6e3cd8b1-4b3a-4e0e-8d6c-2f3a5c1b9a77 0f9c2a7e-1d3b-4c5a-8e6f-7a9b0c1d2e3f",
    "a=rtcp-mux",
    "a=rtcp-rsize",
    "a=rtpmap:111 opus/48000/2",
    "a=rtcp-fb:111 transport-cc",
    "a=fmtp:111 minptime=10;useinbandfec=1",
    "a=rtpmap:63 red/48000/2",
    "a=fmtp:63 111/111",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:13 CN/8000",
    "a=rtpmap:110 telephone-event/48000",
    "a=rtpmap:126 telephone-event/8000",
    "a=ssrc:3735928559 cname:Lo9uYj6k9HwR3oJ+",
    "a=ssrc:3735928559 msid:6e3cd8b1-4b3a-4e0e-8d6c-2f3a5c1b9a77 "
    "0f9c2a7e-1d3b-4c5a-8e6f-7a9b0c1d2e3f",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103",
    "c=IN IP4 0.0.0.0",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=ice-ufrag:Nq3X",
    "a=ice-pwd:YH8cK7o0s0cXvYyG5N3VjC1a",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:"
    "C2:43:F0:A1:58:D0:A1:2C:19:08",
    "a=setup:actpass",
    "a=mid:1",
    "a=extmap:14 urn:ietf:params:rtp-hdrext:toffset",
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:13 urn:3gpp:video-orientation",
    "a=extmap:5 http://www.webrtc.org/experiments/rtp-hdrext/playout-delay",
    "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "a=sendrecv",
    "a=msid:6e3cd8b1-4b3a-4e0e-8d6c-2f3a5c1b9a77 9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d",
    "a=rtcp-mux",
    "a=rtcp-rsize",
    "a=rtpmap:96 VP8/90000",
    "a=rtcp-fb:96 goog-remb",
    "a=rtcp-fb:96 transport-cc",
    "a=rtcp-fb:96 ccm fir",
    "a=rtcp-fb:96 nack",
    "a=rtcp-fb:96 nack pli",
    "a=rtpmap:97 rtx/90000",
    "a=fmtp:97 apt=96",
    "a=rtpmap:102 H264/90000",
    "a=rtcp-fb:102 nack pli",
    "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
    "a=rtpmap:103 rtx/90000",
    "a=fmtp:103 apt=102",
    "a=ssrc-group:FID 1111111111 2222222222",
    "a=ssrc:1111111111 cname:Lo9uYj6k9HwR3oJ+",
    "a=ssrc:2222222222 cname:Lo9uYj6k9HwR3oJ+",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "c=IN IP4 0.0.0.0",
    "a=ice-ufrag:Nq3X",
    "a=ice-pwd:YH8cK7o0s0cXvYyG5N3VjC1a",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:"
    "C2:43:F0:A1:58:D0:A1:2C:19:08",
    "a=setup:actpass",
    "a=mid:2",
    "a=sctp-port:5000",
    "a=max-message-size:262144",
)

# Firefox's answer to it (its o= username names the browser; candidates in the SDP, host
# ones as mDNS names and IPv6, a relay one).
FIREFOX_ANSWER = sdp(
    "v=0",
    "o=mozilla...THIS_IS_SDPARTA-128.0 5133496733445624069 0 IN IP4 0.0.0.0",
    "s=-",
    "t=0 0",
    "a=fingerprint:sha-256 2E:4A:C4:36:98:1A:6F:0B:7D:3E:51:8C:2A:9F:44:10:B2:C7:65:D8:0E:93:"
    "1F:7A:46:BC:DA:53:08:E1:9D:27",
    "a=group:BUNDLE 0 1 2",
    "a=ice-options:trickle",
    "a=msid-semantic:WMS *",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 9 0 8 126",
    "c=IN IP4 0.0.0.0",
    "a=candidate:0 1 UDP 2122252543 8f1c3a2e-5b7d-4e9f-a1c3-5e7f9b1d3f5a.local 51474 typ host",
    "a=candidate:1 1 UDP 2122187007 2001:db8:85a3::8a2e:370:7334 51475 typ host",
    "a=candidate:2 1 TCP 2105524479 8f1c3a2e-5b7d-4e9f-a1c3-5e7f9b1d3f5a.local 9 typ host "
    "tcptype active",
    "a=candidate:3 1 UDP 1686052863 203.0.113.50 51474 typ srflx raddr 0.0.0.0 rport 0",
    "a=candidate:4 1 UDP 92217343 198.51.100.10 62000 typ relay raddr 203.0.113.50 rport 51474",
    "a=end-of-candidates",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=fmtp:111 maxplaybackrate=48000;stereo=1;useinbandfec=1",
    "a=fmtp:126 0-15",
    "a=ice-pwd:0a8d4b2e6c1f9e3d7b5a2c4e6f8a1b3d",
    "a=ice-ufrag:5b1e8c2a",
    "a=mid:0",
    "a=msid:{7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d} {1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e}",
    "a=rtcp-mux",
    "a=rtpmap:111 opus/48000/2",
    "a=rtpmap:9 G722/8000/1",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:126 telephone-event/8000",
    "a=setup:active",
    "a=ssrc:2349823498 cname:{0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d}",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
    "c=IN IP4 0.0.0.0",
    "a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:4 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=extmap:5 urn:ietf:params:rtp-hdrext:toffset",
    "a=extmap:6/recvonly http://www.webrtc.org/experiments/rtp-hdrext/playout-delay",
    "a=fmtp:96 max-fs=12288;max-fr=60",
    "a=fmtp:97 apt=96",
    "a=ice-pwd:0a8d4b2e6c1f9e3d7b5a2c4e6f8a1b3d",
    "a=ice-ufrag:5b1e8c2a",
    "a=mid:1",
    "a=msid:{7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d} {2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f}",
    "a=rtcp-fb:96 nack",
    "a=rtcp-fb:96 nack pli",
    "a=rtcp-fb:96 ccm fir",
    "a=rtcp-fb:96 goog-remb",
    "a=rtcp-fb:96 transport-cc",
    "a=rtcp-mux",
    "a=rtcp-rsize",
    "a=rtpmap:96 VP8/90000",
    "a=rtpmap:97 rtx/90000",
    "a=sendrecv",
    "a=setup:active",
    "a=ssrc:3123456789 cname:{0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d}",
    "a=ssrc:3223456789 cname:{0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d}",
    "a=ssrc-group:FID 3123456789 3223456789",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "c=IN IP4 0.0.0.0",
    "a=ice-pwd:0a8d4b2e6c1f9e3d7b5a2c4e6f8a1b3d",
    "a=ice-ufrag:5b1e8c2a",
    "a=mid:2",
    "a=setup:active",
    "a=sctp-port:5000",
    "a=max-message-size:1073741823",
)

TURN_ADDRESSES = {"198.51.100.9", "198.51.100.10"}
SENDERS_ADDRESSES = ("192.168.1.20", "203.0.113.", "2001:db8:", ".local", "mozilla", "SDPARTA")


def lines_of(description: str, prefix: str) -> list[str]:
    return [line for line in description.split("\r\n") if line.startswith(prefix)]


@pytest.mark.parametrize("browser_sdp", [CHROME_OFFER, FIREFOX_ANSWER], ids=["chrome", "firefox"])
def test_browser_descriptions_stay_usable_under_relay_only(browser_sdp: str) -> None:
    filtered = filter_sdp(browser_sdp, Policy.RELAY_ONLY)
    for leaked in SENDERS_ADDRESSES:
        assert leaked not in filtered
    # Everything a peer negotiates with went through untouched.
    for kind in ("m=", "a=rtpmap:", "a=fmtp:", "a=rtcp-fb:", "a=fingerprint:", "a=ice-ufrag:"):
        assert lines_of(filtered, kind) == lines_of(browser_sdp, kind), kind
    for kind in ("a=ice-pwd:", "a=setup:", "a=mid:", "a=extmap:", "a=ssrc", "a=group:"):
        assert lines_of(filtered, kind) == lines_of(browser_sdp, kind), kind
    assert len(lines_of(filtered, "a=msid")) == len(lines_of(browser_sdp, "a=msid"))
    candidates = lines_of(filtered, "a=candidate:")
    assert len(candidates) == 1 and "typ relay raddr 0.0.0.0 rport 0" in candidates[0]
    assert candidates[0].split()[4] in TURN_ADDRESSES
    # It still parses, here and in another stack, and filtering it again changes nothing.
    assert filter_sdp(filtered, Policy.RELAY_ONLY) == filtered
    aiortc_sdp.SessionDescription.parse(filtered)


@pytest.mark.parametrize("browser_sdp", [CHROME_OFFER, FIREFOX_ANSWER], ids=["chrome", "firefox"])
def test_browser_descriptions_keep_every_candidate_under_open(browser_sdp: str) -> None:
    filtered = filter_sdp(browser_sdp, Policy.OPEN)
    assert lines_of(filtered, "a=candidate:") == lines_of(browser_sdp, "a=candidate:")
    assert lines_of(filtered, "c=") == lines_of(browser_sdp, "c=")
    assert lines_of(filtered, "a=rtcp:") == lines_of(browser_sdp, "a=rtcp:")
    assert "mozilla" not in filtered  # the o= username goes under every policy
    aiortc_sdp.SessionDescription.parse(filtered)


def test_hostile_descriptions_are_filtered_in_linear_time() -> None:
    # Shapes that make backtracking patterns explode: long runs of what a field allows,
    # of spaces, and of near-misses, at the largest size calls.signal accepts.
    longest = "x" * 2000
    hostile = [
        sdp(*HEAD, *["a=candidate:" + "1 " * 900] * 30),
        sdp(*HEAD, *["a=fmtp:111 " + "a=1;" * 400] * 30),
        sdp(*HEAD, *["a=fingerprint:sha-256 " + "AB:" * 600] * 30),
        sdp(*HEAD, *["c=IN IP4 " + "1." * 900] * 30),
        sdp(*HEAD, *[f"a={longest}"] * 30),
        sdp(*HEAD, *["a=ssrc:1 " + " " * 1900 + "cname:x"] * 30),
    ]
    started = time.perf_counter()
    for text in hostile:
        for policy in Policy:
            filter_sdp(text, policy)
    assert time.perf_counter() - started < 1.0
