"""The grammar shared by candidates and descriptions: tokens that cannot spell an
address, and exact checks for the values that must hold one."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

# --- Shared grammar -------------------------------------------------------------------
#
# Every pattern is one bounded character class (no nested quantifier): matching is
# linear in the value, whatever a client sends.

# token-char (RFC 8866 section 9) without ".", plus the "/" and "=" of base64 values
# (Chrome's cnames): identifiers (mid, msid, cname, rid, ice-options) need nothing more,
# and no address can be written without "." or ":".
ID = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=^_`{|}~]{1,64}")
NUMBER = re.compile(r"[0-9]{1,10}")
_PORT = re.compile(r"[0-9]{1,5}")
PAYLOAD_TYPE = re.compile(r"[0-9]{1,3}")
NAME = re.compile(r"[A-Za-z0-9_\-]{1,32}")  # codec and semantics names, bwtype
# fmtp / rid parameters (RFC 8866 section 6.15): "minptime=10;useinbandfec=1",
# "111/111", "0-15", base64 "sprop-parameter-sets=Z0IAH5Wo,aM48gA==".
PARAMETERS = re.compile(r"[A-Za-z0-9;=,/+_\-]{1,512}")
_DNS_LABEL = re.compile(r"[A-Za-z0-9\-]{1,63}")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # C0, DEL, C1, line breaks


def split_fields(value: str) -> list[str]:
    """SP-separated fields; runs of spaces count as one (stacks differ)."""
    return [field for field in value.split(" ") if field]


def all_match(pattern: re.Pattern[str], fields: Iterable[str]) -> bool:
    return all(pattern.fullmatch(field) for field in fields)


def is_ip(text: str, version: int | None = None) -> bool:
    """An IP literal (of ``version`` if given), without a zone (``%eth0``)."""
    if "%" in text:
        return False
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return version is None or address.version == version


def is_hostname(text: str) -> bool:
    """A DNS name (RFC 8866 section 9 FQDN), e.g. an mDNS ``<uuid>.local``."""
    return len(text) <= 253 and all_match(_DNS_LABEL, text.split("."))


def is_port(text: str) -> bool:
    return _PORT.fullmatch(text) is not None and int(text) <= 65535


ICE_UFRAG = re.compile(r"[A-Za-z0-9+/]{4,256}")  # RFC 8839 section 5.4
ICE_PWD = re.compile(r"[A-Za-z0-9+/]{22,256}")


def is_mid(text: str) -> bool:
    """A media id (``a=mid``, a trickled candidate's ``sdpMid``) in the grammar this
    module relays, which cannot spell an address."""
    return ID.fullmatch(text) is not None


def is_ice_ufrag(text: str) -> bool:
    """An ICE username fragment (``a=ice-ufrag``, a trickled ``usernameFragment``)."""
    return ICE_UFRAG.fullmatch(text) is not None
