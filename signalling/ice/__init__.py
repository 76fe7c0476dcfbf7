"""ICE configuration for clients and the address-privacy filter of what is relayed.

TURN credentials follow coturn's REST API scheme ("TURN REST API", draft-uberti-
behave-turn-rest-00, coturn's ``use-auth-secret``): ``username = "<expiry>:<userId>"``
with ``expiry`` in Unix seconds, ``credential = base64(HMAC-SHA1(secret, username))``.
coturn recomputes the credential from its copy of the secret: nothing is stored.

Policies:

- ``relay-only``: clients are told ``iceTransportPolicy: "relay"``, and what the server
  relays of descriptions and trickled candidates names no address of the sender but
  its TURN relay ones: the ``o=``, ``c=`` and ``a=rtcp`` addresses become placeholders,
  only relay candidates pass, and their related address (the sender's own) is blanked.
  A relay candidate's own address is trusted to be the TURN server's (it is whatever
  coturn allocated); checking it against our TURN server's addresses would need them
  passed in.
- ``open``: every candidate type passes and addresses are kept; peers learn each
  other's addresses.

Under both, a description is parsed (RFC 8866) and rebuilt from an allow-list rather
than filtered: deleting what looks dangerous let each new spelling through (LF or
mixed line endings, a trailing space, ``a=remote-candidates``, a ``raddr`` without its
``rport``). A line survives only if its type or attribute is one a WebRTC peer needs
and its value matches that attribute's grammar. Most grammars admit no ``.`` and no
``:``, without which no IPv4, IPv6 or DNS (mDNS ``.local``) address can be written;
the few values that need them (fingerprints, header extension URIs, addresses) are
checked exactly. Candidates (RFC 8839 section 5.1) are parsed and rebuilt the same way.

Errors: input that does not parse raises ``ValueError`` (:func:`parse_sdp`,
:func:`filter_sdp`, :func:`parse_candidate`, :func:`filter_candidate`,
:func:`private_candidate`), which callers answer with invalid params;
:func:`candidate_type` and :func:`relayable_candidate` answer ``None`` / ``False``.
"""

from __future__ import annotations

from signalling.ice.candidates import (
    MAX_CANDIDATE,
    IceCandidate,
    candidate_type,
    filter_candidate,
    parse_candidate,
    parse_candidate_value,
    private_candidate,
    relayable_candidate,
)
from signalling.ice.grammar import is_ice_ufrag, is_mid
from signalling.ice.policy import (
    IceServer,
    Policy,
    ice_servers,
    turn_credentials,
)
from signalling.ice.sdp import (
    MAX_SDP,
    MAX_SDP_LINE,
    MediaSection,
    SdpLine,
    SessionDescription,
    filter_sdp,
    parse_sdp,
)

__all__ = [
    "IceCandidate",
    "IceServer",
    "MAX_CANDIDATE",
    "MAX_SDP",
    "MAX_SDP_LINE",
    "MediaSection",
    "Policy",
    "SdpLine",
    "SessionDescription",
    "candidate_type",
    "filter_candidate",
    "filter_sdp",
    "ice_servers",
    "is_ice_ufrag",
    "is_mid",
    "parse_candidate",
    "parse_candidate_value",
    "parse_sdp",
    "private_candidate",
    "relayable_candidate",
    "turn_credentials",
]
