"""Session descriptions (RFC 8866), parsed and rebuilt from an allow-list under a
policy: the lines and attributes a WebRTC peer needs, each value on its grammar."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from signalling.ice.candidates import parse_candidate_value
from signalling.ice.grammar import (
    CONTROL,
    ICE_PWD,
    ICE_UFRAG,
    ID,
    NAME,
    NUMBER,
    PARAMETERS,
    PAYLOAD_TYPE,
    all_match,
    is_hostname,
    is_ip,
    is_port,
    split_fields,
)
from signalling.ice.policy import Policy

# --- Session descriptions (RFC 8866) --------------------------------------------------

MAX_SDP = 65536  # characters, as calls.signal bounds a description
MAX_SDP_LINE = 2048  # real lines (sha-512 fingerprints, candidates) stay near 200


@dataclass(frozen=True, slots=True)
class SdpLine:
    type: str  # one letter (RFC 8866 section 5)
    value: str  # after "=", trailing whitespace removed


@dataclass(frozen=True, slots=True)
class MediaSection:
    lines: tuple[SdpLine, ...]  # its m= line first


@dataclass(frozen=True, slots=True)
class SessionDescription:
    session: tuple[SdpLine, ...]  # v=, o=, s= first
    media: tuple[MediaSection, ...]


def parse_sdp(sdp: str) -> SessionDescription:
    """The lines of a description, grouped into the session and its media sections.

    Lines may end in CRLF or LF, mixed (RFC 8866 section 5 asks parsers to accept LF),
    and carry trailing spaces or tabs. Raises ``ValueError`` for a description that is
    too long, has a control character or a line that is not ``<letter>=<value>``, or
    lacks the ``v=``, ``o=``, ``s=`` lines that open it or its ``t=`` line.
    """
    if len(sdp) > MAX_SDP:
        raise ValueError(f"a description has at most {MAX_SDP} characters")
    lines = [_sdp_line(number, raw) for number, raw in enumerate(sdp.split("\n"), start=1)]
    present = [line for line in lines if line is not None]
    first_media = next((i for i, line in enumerate(present) if line.type == "m"), len(present))
    session = tuple(present[:first_media])
    _check_session(session)
    media: list[list[SdpLine]] = []
    for line in present[first_media:]:
        if line.type in "vost":
            raise ValueError(f"{line.type}= belongs before the first m= line")
        if line.type == "m":
            media.append([])
        media[-1].append(line)
    return SessionDescription(session, tuple(MediaSection(tuple(section)) for section in media))


def _sdp_line(number: int, raw: str) -> SdpLine | None:
    text = raw.rstrip(" \t\r")
    if not text:
        return None  # the empty string after the final line break, or a blank line
    if len(text) > MAX_SDP_LINE:
        raise ValueError(f"SDP line {number} is longer than {MAX_SDP_LINE} characters")
    if CONTROL.search(text):
        raise ValueError(f"SDP line {number} has a control character")
    if len(text) < 2 or text[1] != "=" or not ("a" <= text[0] <= "z"):
        raise ValueError(f"SDP line {number} is not <type>=<value> (RFC 8866 section 5)")
    return SdpLine(text[0], text[2:])


def _check_session(session: tuple[SdpLine, ...]) -> None:
    types = [line.type for line in session]
    if types[:3] != ["v", "o", "s"]:
        raise ValueError("a description starts with v=, o= and s= (RFC 8866 section 5)")
    if session[0].value != "0":
        raise ValueError("v= is 0 (RFC 8866 section 5.1)")
    if "t" not in types:
        raise ValueError("a description has a t= line (RFC 8866 section 5.9)")
    if any(kind in "vos" for kind in types[3:]):
        raise ValueError("v=, o= and s= appear once")


def filter_sdp(sdp: str, policy: Policy) -> str:
    """The description as relayed under ``policy``: rebuilt from the allow-list with
    CRLF line endings, in RFC 8866 section 5 order (v, o, s, c, b, t, a; then each
    media section: m, c, b, a), keeping the order of the ``a=`` lines.

    relay-only: the ``o=`` address is ``IN IP4 127.0.0.1`` and every ``c=`` and
    ``a=rtcp`` address ``IN IP4 0.0.0.0`` (the placeholders of a JSEP initial offer,
    RFC 8829 section 5.2.1); of the ``a=candidate`` lines only relay ones stay, their
    related address blanked (:meth:`IceCandidate.value`).

    Raises ``ValueError`` if it does not parse (:func:`parse_sdp`) or a line the
    rebuilt description cannot do without (``o=``, ``m=``) is malformed.
    """
    description = parse_sdp(sdp)
    lines = _session_lines(description.session, policy)
    for section in description.media:
        lines += _media_lines(section.lines, policy)
    return "\r\n".join(lines) + "\r\n"


def _session_lines(session: tuple[SdpLine, ...], policy: Policy) -> list[str]:
    timing = split_fields(next(line.value for line in session if line.type == "t"))
    if len(timing) != 2 or not all_match(_TIME, timing):
        timing = ["0", "0"]
    return [
        "v=0",
        _origin(session[1].value, policy),
        "s=-",  # the session name is free text: it could name anything
        *_transport_lines(session[3:], policy),
        "t=" + " ".join(timing),
        *_attribute_lines(session[3:], policy),
    ]


_TIME = re.compile(r"[0-9]{1,20}")


def _media_lines(section: tuple[SdpLine, ...], policy: Policy) -> list[str]:
    return [
        _media(section[0].value),
        *_transport_lines(section[1:], policy),
        *_attribute_lines(section[1:], policy),
    ]


# Every line type but v, o, s, t, m, c, b and a is dropped: i=, u=, e=, p=, k=, z=, r=
# and unknown ones carry free text or times that no WebRTC peer uses.


def _transport_lines(lines: tuple[SdpLine, ...], policy: Policy) -> list[str]:
    """A level's ``c=`` line (the first: one per level, RFC 8866 section 5.7) and its
    well-formed ``b=`` lines."""
    connections = [line.value for line in lines if line.type == "c"]
    kept = [f"c={_connection(connections[0], policy)}"] if connections else []
    return kept + [
        f"b={line.value}" for line in lines if line.type == "b" and _is_bandwidth(line.value)
    ]


def _attribute_lines(lines: tuple[SdpLine, ...], policy: Policy) -> list[str]:
    rebuilt = (_attribute(line.value, policy) for line in lines if line.type == "a")
    return [f"a={attribute}" for attribute in rebuilt if attribute is not None]


_SESSION_NUMBER = re.compile(r"[0-9]{1,20}")
_NO_ADDRESS = "IN IP4 0.0.0.0"
_NO_ORIGIN_ADDRESS = "IN IP4 127.0.0.1"


def _origin(value: str, policy: Policy) -> str:
    """``o=``: no username (RFC 8829 section 5.2.1: "-"), the session id and version
    kept when they are numbers, the address as in :func:`_connection`."""
    fields = split_fields(value)
    if len(fields) != 6:
        raise ValueError("o= has six fields (RFC 8866 section 5.2)")
    numbers = [field if _SESSION_NUMBER.fullmatch(field) else "0" for field in fields[1:3]]
    address = _connection(" ".join(fields[3:]), policy, placeholder=_NO_ORIGIN_ADDRESS)
    return f"o=- {numbers[0]} {numbers[1]} {address}"


def _connection(value: str, policy: Policy, placeholder: str = _NO_ADDRESS) -> str:
    """``<nettype> <addrtype> <address>`` of c=, o= and a=rtcp: the placeholder under
    relay-only (or when malformed), else the address checked against its family."""
    fields = split_fields(value)
    if policy is Policy.RELAY_ONLY or len(fields) != 3:
        return placeholder
    nettype, addrtype, address = fields
    version = {"IP4": 4, "IP6": 6}.get(addrtype)
    if nettype != "IN" or version is None:
        return placeholder
    if not (is_ip(address, version) or is_hostname(address)):
        return placeholder
    return " ".join(fields)


_BANDWIDTH_TYPE = re.compile(r"[A-Za-z0-9\-]{1,16}")


def _is_bandwidth(value: str) -> bool:
    """``b=<bwtype>:<bandwidth>`` (RFC 8866 section 5.8)."""
    kind, colon, amount = value.partition(":")
    return bool(colon and _BANDWIDTH_TYPE.fullmatch(kind) and NUMBER.fullmatch(amount))


_MEDIA = re.compile(r"[a-z]{1,16}")
_PROTO = re.compile(r"[A-Za-z0-9/]{1,64}")
_FORMAT = re.compile(r"[A-Za-z0-9\-]{1,32}")


def _media(value: str) -> str:
    """``m=<media> <port> <proto> <fmt> ...`` (RFC 8866 section 5.14). A malformed one
    rejects the description: dropping it would shift every m-line index."""
    fields = split_fields(value)
    if not (
        4 <= len(fields) <= 64
        and _MEDIA.fullmatch(fields[0])
        and is_port(fields[1])
        and _PROTO.fullmatch(fields[2])
        and all_match(_FORMAT, fields[3:])
    ):
        raise ValueError("m= is <media> <port> <proto> <fmt> ... (RFC 8866 section 5.14)")
    return "m=" + " ".join(fields)


# --- Attributes -----------------------------------------------------------------------
#
# One rewrite per allowed attribute: (name, value or None for a flag, policy) to the
# rebuilt ``name[:value]``, or None to drop the line. An attribute not in _ATTRIBUTES
# is dropped (a=remote-candidates, a=label, a=x-...).

_Rewrite = Callable[[str, str | None, Policy], str | None]


def _attribute(value: str, policy: Policy) -> str | None:
    name, colon, rest = value.partition(":")
    rewrite = _ATTRIBUTES.get(name)
    return None if rewrite is None else rewrite(name, rest if colon else None, policy)


def _flag(name: str, value: str | None, policy: Policy) -> str | None:
    return name if value is None else None


def _words(pattern: re.Pattern[str], low: int, high: int) -> _Rewrite:
    """An attribute of ``low`` to ``high`` SP-separated words, each ``pattern``."""

    def rewrite(name: str, value: str | None, policy: Policy) -> str | None:
        words = split_fields(value or "")
        if low <= len(words) <= high and all_match(pattern, words):
            return f"{name}:{' '.join(words)}"
        return None

    return rewrite


def _one_of(*choices: str) -> _Rewrite:
    def rewrite(name: str, value: str | None, policy: Policy) -> str | None:
        return f"{name}:{value}" if value in choices else None

    return rewrite


# RFC 8122 section 5 hash functions, with the bytes of their digests.
_DIGEST_BYTES = {"sha-1": 20, "sha-224": 28, "sha-256": 32, "sha-384": 48, "sha-512": 64}
_HEX_BYTE = re.compile(r"[0-9A-Fa-f]{2}")


def _fingerprint(name: str, value: str | None, policy: Policy) -> str | None:
    """``a=fingerprint:<hash> <XX:XX:...>``, its digest as long as the hash's."""
    fields = split_fields(value or "")
    if len(fields) != 2:
        return None
    function, digest = fields[0].lower(), fields[1]
    octets = digest.split(":")
    if len(octets) != _DIGEST_BYTES.get(function) or not all_match(_HEX_BYTE, octets):
        return None
    return f"{name}:{function} {digest}"


# RTP header extensions (RFC 8285) that Chrome, Firefox, Safari and aiortc negotiate.
# A URI can hold an address, so only these are relayed; an unknown one is dropped and
# simply not negotiated.
_HEADER_EXTENSIONS = frozenset(
    {
        "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "urn:ietf:params:rtp-hdrext:csrc-audio-level",
        "urn:ietf:params:rtp-hdrext:toffset",
        "urn:ietf:params:rtp-hdrext:sdes:mid",
        "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
        "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
        "urn:3gpp:video-orientation",
        "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        "http://www.webrtc.org/experiments/rtp-hdrext/abs-capture-time",
        "http://www.webrtc.org/experiments/rtp-hdrext/playout-delay",
        "http://www.webrtc.org/experiments/rtp-hdrext/video-content-type",
        "http://www.webrtc.org/experiments/rtp-hdrext/video-timing",
        "http://www.webrtc.org/experiments/rtp-hdrext/color-space",
        "http://www.webrtc.org/experiments/rtp-hdrext/video-layers-allocation00",
        "http://www.webrtc.org/experiments/rtp-hdrext/generic-frame-descriptor-00",
        "http://www.webrtc.org/experiments/rtp-hdrext/video-frame-tracking-id",
        "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
        "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-02",
        "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension",
    }
)
_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


def _extmap(name: str, value: str | None, policy: Policy) -> str | None:
    """``a=extmap:<id>[/<direction>] <uri> [<attributes>]`` (RFC 8285 section 8)."""
    fields = split_fields(value or "")
    if not 2 <= len(fields) <= 6:
        return None
    number, slash, direction = fields[0].partition("/")
    if not PAYLOAD_TYPE.fullmatch(number) or (slash and direction not in _DIRECTIONS):
        return None
    if fields[1] not in _HEADER_EXTENSIONS or not all_match(ID, fields[2:]):
        return None
    return f"{name}:{' '.join(fields)}"


def _rtpmap(name: str, value: str | None, policy: Policy) -> str | None:
    """``a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]`` (RFC 8866 section 6.6)."""
    fields = split_fields(value or "")
    if len(fields) != 2 or not PAYLOAD_TYPE.fullmatch(fields[0]):
        return None
    encoding, *numbers = fields[1].split("/")
    if not (1 <= len(numbers) <= 2 and NAME.fullmatch(encoding) and all_match(NUMBER, numbers)):
        return None
    return f"{name}:{' '.join(fields)}"


def _fmtp(name: str, value: str | None, policy: Policy) -> str | None:
    """``a=fmtp:<pt> <parameters>`` (RFC 8866 section 6.15)."""
    fields = split_fields(value or "")
    if len(fields) < 2 or not PAYLOAD_TYPE.fullmatch(fields[0]):
        return None
    if not all_match(PARAMETERS, fields[1:]):
        return None
    return f"{name}:{' '.join(fields)}"


def _rtcp_fb(name: str, value: str | None, policy: Policy) -> str | None:
    """``a=rtcp-fb:<pt or *> <type> [<parameters>]`` (RFC 4585 section 4.2)."""
    fields = split_fields(value or "")
    if not 2 <= len(fields) <= 4:
        return None
    if not (fields[0] == "*" or PAYLOAD_TYPE.fullmatch(fields[0])):
        return None
    return f"{name}:{' '.join(fields)}" if all_match(ID, fields[1:]) else None


def _rtcp(name: str, value: str | None, policy: Policy) -> str | None:
    """``a=rtcp:<port> [<nettype> <addrtype> <address>]`` (RFC 3605 section 2.1): the
    address is that of the default candidate, so it goes as in :func:`_connection`."""
    fields = split_fields(value or "")
    if not fields or not is_port(fields[0]):
        return None
    if len(fields) == 1:
        return f"{name}:{fields[0]}"
    return f"{name}:{fields[0]} {_connection(' '.join(fields[1:]), policy)}"


def _ssrc(name: str, value: str | None, policy: Policy) -> str | None:
    """``a=ssrc:<ssrc> cname:<cname>`` or ``msid:<stream> [<track>]`` (RFC 5576
    section 4.1, RFC 8830); other source attributes (label, mslabel) are dropped."""
    fields = split_fields(value or "")
    if len(fields) < 2 or not NUMBER.fullmatch(fields[0]):
        return None
    attribute, colon, first = fields[1].partition(":")
    values = [first, *fields[2:]]
    allowed = {"cname": 1, "msid": 2}.get(attribute)
    if not colon or allowed is None or len(values) > allowed or not all_match(ID, values):
        return None
    return f"{name}:{fields[0]} {attribute}:{' '.join(values)}"


def _ssrc_group(name: str, value: str | None, policy: Policy) -> str | None:
    """``a=ssrc-group:<semantics> <ssrc> ...`` (RFC 5576 section 4.2)."""
    fields = split_fields(value or "")
    if not 2 <= len(fields) <= 17 or not NAME.fullmatch(fields[0]):
        return None
    return f"{name}:{' '.join(fields)}" if all_match(NUMBER, fields[1:]) else None


def _group(name: str, value: str | None, policy: Policy) -> str | None:
    """``a=group:<semantics> <mid> ...`` (RFC 5888 section 5, RFC 8843 BUNDLE)."""
    fields = split_fields(value or "")
    if not 1 <= len(fields) <= 65 or not NAME.fullmatch(fields[0]):
        return None
    return f"{name}:{' '.join(fields)}" if all_match(ID, fields[1:]) else None


def _rid(name: str, value: str | None, policy: Policy) -> str | None:
    """``a=rid:<id> send|recv [<restrictions>]`` (RFC 8851 section 10)."""
    fields = split_fields(value or "")
    if not 2 <= len(fields) <= 3 or not NAME.fullmatch(fields[0]):
        return None
    if fields[1] not in ("send", "recv") or not all_match(PARAMETERS, fields[2:]):
        return None
    return f"{name}:{' '.join(fields)}"


def _candidate(name: str, value: str | None, policy: Policy) -> str | None:
    """``a=candidate``: parsed and rebuilt; under relay-only, relay ones only."""
    try:
        candidate = parse_candidate_value(value or "")
    except ValueError:
        return None
    if policy is Policy.RELAY_ONLY and not candidate.is_turn_relay:
        return None
    return f"{name}:{candidate.value(hide_related=policy is Policy.RELAY_ONLY)}"


_ATTRIBUTES: dict[str, _Rewrite] = {
    # Session and transport (RFC 8829 sections 5.2.1 and 5.2.2).
    "group": _group,
    "msid-semantic": _words(ID, 1, 16),
    "ice-ufrag": _words(ICE_UFRAG, 1, 1),
    "ice-pwd": _words(ICE_PWD, 1, 1),
    "ice-options": _words(ID, 1, 8),
    "ice-lite": _flag,
    "fingerprint": _fingerprint,
    "setup": _one_of("actpass", "active", "passive", "holdconn"),  # RFC 4145 section 4
    "extmap-allow-mixed": _flag,
    # Media sections.
    "mid": _words(ID, 1, 1),
    "bundle-only": _flag,
    "extmap": _extmap,
    **{direction: _flag for direction in _DIRECTIONS},
    "msid": _words(ID, 1, 2),
    "rtcp": _rtcp,
    "rtcp-mux": _flag,
    "rtcp-mux-only": _flag,
    "rtcp-rsize": _flag,
    "rtpmap": _rtpmap,
    "fmtp": _fmtp,
    "rtcp-fb": _rtcp_fb,
    "ptime": _words(NUMBER, 1, 1),
    "maxptime": _words(NUMBER, 1, 1),
    "ssrc": _ssrc,
    "ssrc-group": _ssrc_group,
    "rid": _rid,
    "simulcast": _words(PARAMETERS, 1, 4),  # RFC 8853: "send 0;1;2"
    # Data channels (RFC 8841).
    "sctp-port": _words(NUMBER, 1, 1),
    "max-message-size": _words(NUMBER, 1, 1),
    "sctpmap": _words(ID, 2, 3),  # the pre-RFC 8841 form "5000 webrtc-datachannel 1024"
    # ICE (RFC 8839 sections 5.1 and 5.3).
    "candidate": _candidate,
    "end-of-candidates": _flag,
}
