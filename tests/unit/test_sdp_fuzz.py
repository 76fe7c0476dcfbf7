"""Property tests of the relay-only filter: descriptions and trickled candidates that
hide a secret address (IPv4, IPv6 in any spelling, an mDNS name) in every field of every
line, with odd whitespace, mixed line endings and extra tokens. The secret never comes
out, and nothing but ``ValueError`` ever does either.

Deterministic on every run and every machine: ``derandomize=True`` and no example
database, so a fresh clone needs no ``.hypothesis`` folder. Besides the random search, one
test walks every field of the template with fixed secrets, so coverage of each field does
not depend on the draw.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signalling.ice import (
    Policy,
    candidate_type,
    filter_candidate,
    filter_sdp,
    parse_sdp,
    private_candidate,
    relayable_candidate,
)

FUZZ = settings(
    derandomize=True,
    database=None,
    max_examples=300,
    deadline=None,  # timing is the per-test timeout's job, not hypothesis's
    suppress_health_check=[HealthCheck.too_slow],
)

TURN = "198.51.100.9"  # the one address relay-only may pass: our TURN server's relay
RELAY = f"candidate:3 1 udp 16777215 {TURN} 61000 typ relay raddr 203.0.113.7 rport 40000"

# A description with every line type and every allowed attribute (and some that are
# not), each line as its type letter and its SP-separated fields. The secret goes into
# these fields; the template itself names no address but the TURN server's.
TEMPLATE: list[tuple[str, list[str]]] = [
    (letter, value.split(" "))
    for letter, value in (
        ("v", "0"),
        ("o", "- 3900000000 2 IN IP4 127.0.0.1"),
        ("s", "-"),
        ("i", "a session"),
        ("u", "http://example.com/"),
        ("e", "alice@example.com"),
        ("p", "+1 555 0100"),
        ("c", "IN IP4 0.0.0.0"),
        ("b", "AS:256"),
        ("t", "0 0"),
        ("r", "604800 3600 0 90000"),
        ("z", "2882844526 -1h"),
        ("k", "prompt"),
        ("x", "unknown"),
        ("a", "group:BUNDLE 0 1"),
        ("a", "msid-semantic:WMS stream"),
        ("a", "ice-options:trickle"),
        ("a", "ice-lite"),
        ("a", "extmap-allow-mixed"),
        ("a", "fingerprint:sha-256 " + ":".join(["7B"] * 32)),
        ("a", "setup:actpass"),
        ("a", "ice-ufrag:Nq3X"),
        ("a", "ice-pwd:YH8cK7o0s0cXvYyG5N3VjC1a"),
        ("a", "tool:libwebrtc"),
        ("m", "audio 61000 UDP/TLS/RTP/SAVPF 111 0"),
        ("i", "audio"),
        ("c", "IN IP4 0.0.0.0"),
        ("b", "TIAS:64000"),
        ("k", "prompt"),
        ("a", "mid:0"),
        ("a", "bundle-only"),
        ("a", "extmap:1/sendrecv urn:ietf:params:rtp-hdrext:ssrc-audio-level vad=on"),
        ("a", "extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"),
        ("a", "sendrecv"),
        ("a", "msid:stream track"),
        ("a", "rtcp:9 IN IP4 0.0.0.0"),
        ("a", "rtcp-mux"),
        ("a", "rtcp-mux-only"),
        ("a", "rtcp-rsize"),
        ("a", "rtpmap:111 opus/48000/2"),
        ("a", "fmtp:111 minptime=10;useinbandfec=1"),
        ("a", "rtcp-fb:111 nack pli"),
        ("a", "rtcp-fb:* transport-cc"),
        ("a", "ptime:20"),
        ("a", "maxptime:120"),
        ("a", "ssrc:1111 cname:Lo9uYj6k9HwR3oJ+"),
        ("a", "ssrc:1111 msid:stream track"),
        ("a", "ssrc:1111 label:track"),
        ("a", "ssrc-group:FID 1111 2222"),
        ("a", "rid:hi send max-width=1280;max-height=720"),
        ("a", "simulcast:send hi;lo"),
        ("a", "candidate:1 1 udp 2130706431 host.example 50000 typ host generation 0"),
        ("a", "candidate:2 1 udp 1694498815 srflx.example 40000 typ srflx raddr h.example rport 5"),
        ("a", "candidate:4 1 tcp 1853824767 prflx.example 9 typ prflx tcptype active"),
        ("a", RELAY + " generation 0 ufrag Nq3X network-id 1 network-cost 10 x-note n"),
        ("a", f"candidate:5 1 udp 16777215 {TURN} 61001 typ relay raddr h.example"),
        ("a", "end-of-candidates"),
        ("a", "remote-candidates:1 h.example 50000"),
        ("a", "x-custom:value"),
        ("m", "video 9 UDP/TLS/RTP/SAVPF 96 97"),
        ("c", "IN IP6 ::"),
        ("a", "mid:1"),
        ("a", "recvonly"),
        ("a", "rtpmap:96 VP8/90000"),
        ("a", "rtpmap:97 rtx/90000"),
        ("a", "fmtp:97 apt=96"),
        ("m", "application 9 UDP/DTLS/SCTP webrtc-datachannel"),
        ("a", "mid:2"),
        ("a", "inactive"),
        ("a", "sendonly"),
        ("a", "sctp-port:5000"),
        ("a", "max-message-size:262144"),
        ("a", "sctpmap:5000 webrtc-datachannel 1024"),
    )
]
# The relay candidate's own address is the TURN server's: it is relayed by design, so
# no IP secret is written over it (an mDNS one is: a relay is never at a host name).
TURN_FIELDS = {(line, 4) for line, (letter, fields) in enumerate(TEMPLATE) if TURN in fields}


def render(
    lines: list[tuple[str, list[str]]],
    separators: list[str] | None = None,
    endings: list[str] | None = None,
) -> str:
    out = []
    for n, (letter, fields) in enumerate(lines):
        separator = separators[n] if separators else " "
        ending = endings[n] if endings else "\r\n"
        out.append(f"{letter}={separator.join(fields)}{ending}")
    return "".join(out)


BASE = filter_sdp(render(TEMPLATE), Policy.RELAY_ONLY)


# --- Secrets ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Secret:
    spelling: str  # as it is hidden
    forms: tuple[str, ...]  # every spelling that must not come out
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None  # None: a DNS name


def ip_secret(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, spelling: str | None = None
) -> Secret:
    forms = {str(address), address.exploded, str(address).upper(), address.exploded.upper()}
    if spelling is not None:
        forms.add(spelling)
    return Secret(spelling or str(address), tuple(sorted(forms)), address)


def ip_over_turn(secret: Secret, changed: str) -> bool:
    """Whether ``changed``, in the TURN address's place, is an IP secret in that field
    (rather than an extra token beside it)."""
    return secret.address is not None and " " not in changed


def mdns_secret(name: str) -> Secret:
    return Secret(name, (name, name.lower()), None)


def usable(secret: Secret) -> bool:
    """A secret that the template's own filtered output does not already spell (the
    placeholders 0.0.0.0 and 127.0.0.1, pieces of the TURN address), and not the
    unspecified address, which is nobody's."""
    if secret.address is not None and secret.address.is_unspecified:
        return False
    return not any(form in BASE for form in secret.forms)


def ipv6_spellings(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> st.SearchStrategy[Secret]:
    return st.sampled_from(
        [str(address), address.exploded, str(address).upper(), address.exploded.upper()]
    ).map(lambda spelling: ip_secret(address, spelling))


SECRETS = st.one_of(
    st.ip_addresses(v=4).map(ip_secret),
    st.ip_addresses(v=6).flatmap(ipv6_spellings),
    st.uuids().map(lambda uuid: mdns_secret(f"{uuid}.local")),
).filter(usable)

# Runs of what an IP literal is written with: each is parsed (give or take a stray
# character at either end), so a secret that came out in another spelling (compressed,
# exploded, upper case, IPv4-mapped) is found too.
_IP_RUN = re.compile(r"[0-9A-Fa-f:.]+")


def ip_literals(text: str) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    found: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for run in _IP_RUN.findall(text):
        if run.count(":") < 2 and run.count(".") < 3:
            continue  # no address is that short
        for start, end in ((0, len(run)), (1, len(run)), (0, len(run) - 1), (1, len(run) - 1)):
            try:
                address = ipaddress.ip_address(run[start:end])
            except ValueError:
                continue
            found.add(address)
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                found.add(address.ipv4_mapped)
    return found


def assert_hidden(secret: Secret, text: str) -> None:
    for form in secret.forms:
        assert form not in text, f"{secret.spelling!r} came out as {form!r}:\n{text}"
    if secret.address is None:
        assert ".local" not in text.lower(), text
    else:
        assert secret.address not in ip_literals(text), f"{secret.spelling!r} came out:\n{text}"


def assert_well_formed(text: str) -> None:
    """Rebuilt: ASCII, CRLF only, parses again and is a fixed point of the filter."""
    assert text.isascii() and text.endswith("\r\n")
    assert "\n" not in text.replace("\r\n", "") and "\r" not in text.replace("\r\n", "")
    parse_sdp(text)
    assert filter_sdp(text, Policy.RELAY_ONLY) == text


def relay_only(text: str) -> str | None:
    """The filter as relay.py calls it: None when it refuses the description."""
    try:
        return filter_sdp(text, Policy.RELAY_ONLY)
    except ValueError:
        return None


# --- Every field, fixed secrets --------------------------------------------------------

FIXED_SECRETS = [
    ip_secret(ipaddress.ip_address("10.11.12.13")),
    ip_secret(ipaddress.ip_address("2001:db8:dead:beef::42")),
    ip_secret(
        ipaddress.ip_address("2001:db8:dead:beef::42"),
        "2001:0db8:dead:beef:0000:0000:0000:0042",
    ),
    mdns_secret("1f0e2d3c-4b5a-4978-8796-a5b4c3d2e1f0.local"),
]


def injections(field: str, secret: str) -> list[str]:
    """The field with the secret over it, before it, after it, inside it (after a
    ``name:`` too), and as extra tokens around it."""
    colon = field.find(":") + 1
    middle = len(field) // 2
    return [
        secret,
        secret + field,
        field + secret,
        field[:colon] + secret + field[colon:],
        field[:middle] + secret + field[middle:],
        f"{secret} {field}",
        f"{field} {secret}",
    ]


def test_the_template_keeps_what_it_should() -> None:
    assert_well_formed(BASE)
    assert "typ relay raddr 0.0.0.0 rport 0 generation 0 ufrag Nq3X" in BASE
    assert "x-note" not in BASE and "remote-candidates" not in BASE and "label" not in BASE
    assert BASE.count("\r\nm=") == 3 and "a=fingerprint:sha-256 7B:" in BASE


def test_a_secret_in_any_field_of_any_line_never_comes_out() -> None:
    refused = kept = 0
    for secret in FIXED_SECRETS:
        for line, (letter, fields) in enumerate(TEMPLATE):
            for index, field in enumerate(fields):
                for changed in injections(field, secret.spelling):
                    if (line, index) in TURN_FIELDS and ip_over_turn(secret, changed):
                        continue
                    lines = list(TEMPLATE)
                    lines[line] = (letter, [*fields[:index], changed, *fields[index + 1 :]])
                    filtered = relay_only(render(lines))
                    if filtered is None:
                        refused += 1
                        continue
                    kept += 1
                    assert_hidden(secret, filtered)
    # Mostly the line or field went, not the whole description (which goes when the
    # secret breaks a line it cannot do without: v=, o=, t=, m=).
    assert kept > 5 * refused


# --- Random secrets, several at once, odd whitespace and endings ----------------------

ENDINGS = ["\r\n", "\n", " \r\n", "\t\n", "  \r\n", "\r\r\n", " \t \n"]
SEPARATORS = [" ", "  ", "   "]
# Whole lines that could carry it too: every line type, attributes known and unknown.
EXTRA_LINES = ["{letter}={secret}", "a={name}:{secret}", "a={name}:x {secret}", "a={secret}"]
NAMES = sorted({fields[0].split(":")[0] for letter, fields in TEMPLATE if letter == "a"})


@st.composite
def hidden_descriptions(draw: st.DrawFn) -> tuple[Secret, str]:
    secret = draw(SECRETS)
    lines = [(letter, list(fields)) for letter, fields in TEMPLATE]
    for _ in range(draw(st.integers(1, 4))):
        line = draw(st.integers(0, len(lines) - 1))
        letter, fields = lines[line]
        index = draw(st.integers(0, len(fields) - 1))
        choices = injections(fields[index], secret.spelling)
        if (line, index) in TURN_FIELDS:
            choices = [choice for choice in choices if not ip_over_turn(secret, choice)]
        fields[index] = draw(st.sampled_from(choices))
    for _ in range(draw(st.integers(0, 2))):
        template = draw(st.sampled_from(EXTRA_LINES))
        extra = template.format(
            letter=draw(st.sampled_from("vostmcbaiuepkzrxy")),
            name=draw(st.sampled_from(NAMES)),
            secret=secret.spelling,
        )
        lines.insert(draw(st.integers(1, len(lines))), (extra[0], [extra[2:]]))
    n = len(lines)
    separators = draw(st.lists(st.sampled_from(SEPARATORS), min_size=n, max_size=n))
    endings = draw(st.lists(st.sampled_from(ENDINGS), min_size=n, max_size=n))
    return secret, render(lines, separators, endings)


@FUZZ
@given(hidden_descriptions())
def test_no_hidden_address_survives_relay_only(case: tuple[Secret, str]) -> None:
    secret, text = case
    filtered = relay_only(text)
    if filtered is not None:
        assert_hidden(secret, filtered)
        assert_well_formed(filtered)


@settings(FUZZ, max_examples=100)  # a plain property: fewer draws suffice
@given(st.data())
def test_whitespace_and_line_endings_change_nothing(data: st.DataObject) -> None:
    n = len(TEMPLATE)
    separators = data.draw(st.lists(st.sampled_from(SEPARATORS), min_size=n, max_size=n))
    endings = data.draw(st.lists(st.sampled_from(ENDINGS), min_size=n, max_size=n))
    assert filter_sdp(render(TEMPLATE, separators, endings), Policy.RELAY_ONLY) == BASE


# --- Trickled candidates ---------------------------------------------------------------

CANDIDATES = [
    "candidate:1 1 udp 2130706431 host.example 50000 typ host generation 0 network-id 1",
    "candidate:2 1 udp 1694498815 srflx.example 40000 typ srflx raddr h.example rport 5",
    "candidate:4 1 tcp 1853824767 prflx.example 9 typ prflx tcptype active",
    RELAY + " generation 0 ufrag Nq3X network-id 1 network-cost 10",
    f"candidate:3 1 udp 16777215 {TURN} 61000 typ relay raddr h.example",
]


@st.composite
def hidden_candidates(draw: st.DrawFn) -> tuple[Secret, str]:
    secret = draw(SECRETS)
    fields = draw(st.sampled_from(CANDIDATES)).removeprefix("candidate:").split(" ")
    for _ in range(draw(st.integers(1, 3))):
        index = draw(st.integers(0, len(fields) - 1))
        choices = injections(fields[index], secret.spelling)
        if index == 4 and TURN in fields[index]:  # the TURN address, maybe with extras
            choices = [choice for choice in choices if not ip_over_turn(secret, choice)]
        fields[index] = draw(st.sampled_from(choices))
    separator = draw(st.sampled_from(SEPARATORS))
    prefix = draw(st.sampled_from(["candidate:", "a=candidate:", ""]))
    return secret, prefix + separator.join(" ".join(fields).split(" "))


@FUZZ
@given(hidden_candidates())
def test_no_hidden_address_survives_in_trickled_candidates(case: tuple[Secret, str]) -> None:
    secret, candidate = case
    kind = candidate_type(candidate)
    relayable = relayable_candidate(candidate, Policy.RELAY_ONLY)
    if relayable:  # what relay.py sends on
        assert kind == "relay"
        assert_hidden(secret, private_candidate(candidate))
    try:
        relayed = filter_candidate(candidate, Policy.RELAY_ONLY)
    except ValueError:
        assert kind is None and not relayable
        return
    assert (relayed is not None) is relayable
    if relayed is not None:
        assert_hidden(secret, relayed)
        assert relayed.split()[4] == TURN and " raddr 0.0.0.0 rport 0" in relayed


# --- Anything at all: ValueError or an answer ------------------------------------------

SDP_ALPHABET = st.sampled_from(list("vosctmbaiu=:/ .-0123456789abcdefIPN\r\n\t\x00\x85é"))


@FUZZ
@given(
    st.lists(
        st.one_of(
            st.sampled_from(render(TEMPLATE).split("\r\n")),
            st.text(SDP_ALPHABET, max_size=60),
            st.text(max_size=40),
        ),
        max_size=40,
    ),
    st.sampled_from(ENDINGS),
)
def test_any_text_is_filtered_or_refused_with_value_error(lines: list[str], end: str) -> None:
    text = end.join(["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", *lines])
    for policy in Policy:
        try:
            filtered = filter_sdp(text, policy)
        except ValueError:
            continue
        assert filtered.isascii() and filter_sdp(filtered, policy) == filtered


@FUZZ
@given(st.one_of(st.text(max_size=200), st.text(SDP_ALPHABET, max_size=200)))
def test_any_candidate_text_is_refused_with_value_error(candidate: str) -> None:
    assert candidate_type(candidate) in (None, "host", "srflx", "prflx", "relay")
    for policy in Policy:
        relayable_candidate(candidate, policy)
        try:
            filter_candidate(candidate, policy)
        except ValueError:
            pass
    try:
        private_candidate(candidate)
    except ValueError:
        pass
