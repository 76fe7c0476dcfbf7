"""ICE candidates (RFC 8839 section 5.1), parsed and rebuilt under a policy."""

from __future__ import annotations

import re
from dataclasses import dataclass

from signalling.ice.grammar import ICE_UFRAG, NUMBER, is_hostname, is_ip, is_port, split_fields
from signalling.ice.policy import Policy

# --- Candidates (RFC 8839 section 5.1) ------------------------------------------------

MAX_CANDIDATE = 1024
_FOUNDATION = re.compile(r"[A-Za-z0-9+/]{1,32}")  # 1*32ice-char
_COMPONENT = re.compile(r"[0-9]{1,3}")
_CANDIDATE_TYPES = frozenset({"host", "srflx", "prflx", "relay"})
# Extensions whose values cannot hold an address, with their grammar; any other
# extension (or a value off its grammar) is dropped, since it could carry one.
_CANDIDATE_EXTENSIONS = {
    "generation": NUMBER,
    "ufrag": ICE_UFRAG,
    "network-id": NUMBER,
    "network-cost": NUMBER,
    "tcptype": re.compile(r"active|passive|so"),  # RFC 6544 section 4.5
}


@dataclass(frozen=True, slots=True)
class IceCandidate:
    """A parsed candidate: every field checked, only known-safe extensions kept."""

    foundation: str
    component: str
    transport: str
    priority: str
    address: str
    port: str
    type: str
    related_address: str | None
    related_port: str | None
    extensions: tuple[tuple[str, str], ...]

    @property
    def is_turn_relay(self) -> bool:
        """A relay candidate at an IP literal: the TURN server's address. A host name
        (mDNS ``.local``) is never a relay's, so it counts as the sender's own."""
        return self.type == "relay" and is_ip(self.address)

    def value(self, *, hide_related: bool) -> str:
        """The attribute value (without ``candidate:``). With ``hide_related``, the
        related address, which names the sender's own address, is ``0.0.0.0 0``:
        RFC 8839 section 5.1 requires it on relay candidates and gives it no use in
        ICE, and that is what browsers send when they hide it."""
        fields = [self.foundation, self.component, self.transport, self.priority]
        fields += [self.address, self.port, "typ", self.type]
        if hide_related:
            fields += ["raddr", "0.0.0.0", "rport", "0"]
        else:
            if self.related_address is not None:
                fields += ["raddr", self.related_address]
            if self.related_port is not None:
                fields += ["rport", self.related_port]
        for name, value in self.extensions:
            fields += [name, value]
        return " ".join(fields)


def parse_candidate(candidate: str) -> IceCandidate:
    """A trickled candidate (``candidate:...``, also accepted with ``a=`` or bare).

    Raises ``ValueError`` naming what is wrong.
    """
    if len(candidate) > MAX_CANDIDATE:
        raise ValueError(f"a candidate has at most {MAX_CANDIDATE} characters")
    if not (candidate.isascii() and candidate.isprintable()):
        raise ValueError("a candidate is one line of printable ASCII")
    return parse_candidate_value(candidate.removeprefix("a=").removeprefix("candidate:"))


def parse_candidate_value(value: str) -> IceCandidate:
    fields = split_fields(value)
    if len(fields) < 8 or fields[6] != "typ":
        raise ValueError("not an ICE candidate (RFC 8839 section 5.1)")
    foundation, component, transport, priority, address, port, _, kind = fields[:8]
    if not (
        _FOUNDATION.fullmatch(foundation)
        and _COMPONENT.fullmatch(component)
        and transport.lower() in ("udp", "tcp")
        and NUMBER.fullmatch(priority)
        and (is_ip(address) or is_hostname(address))
        and is_port(port)
        and kind in _CANDIDATE_TYPES
    ):
        raise ValueError("not an ICE candidate (RFC 8839 section 5.1)")
    related_address, related_port, extensions = _candidate_extensions(fields[8:])
    return IceCandidate(
        foundation,
        component,
        transport,
        priority,
        address,
        port,
        kind,
        related_address,
        related_port,
        extensions,
    )


def _candidate_extensions(
    fields: list[str],
) -> tuple[str | None, str | None, tuple[tuple[str, str], ...]]:
    """``raddr``, ``rport`` (each optional) and the known extensions, from the
    name-value pairs that follow the candidate type."""
    if len(fields) % 2:
        raise ValueError(f"candidate extension {fields[-1]!r} has no value")
    related_address = related_port = None
    kept: dict[str, str] = {}
    for name, value in zip(fields[::2], fields[1::2], strict=True):
        if name == "raddr":
            if not (is_ip(value) or is_hostname(value)):
                raise ValueError("raddr is not an address")
            related_address = value
        elif name == "rport":
            if not is_port(value):
                raise ValueError("rport is not a port")
            related_port = value
        else:
            grammar = _CANDIDATE_EXTENSIONS.get(name)
            if grammar is not None and grammar.fullmatch(value) and name not in kept:
                kept[name] = value
    return related_address, related_port, tuple(kept.items())


def filter_candidate(candidate: str, policy: Policy) -> str | None:
    """A trickled candidate as relayed under ``policy`` (rebuilt, with the prefix it
    came with, ``a=`` dropped), or None where the policy drops it.

    Raises ``ValueError`` if it is not a candidate.
    """
    parsed = parse_candidate(candidate)
    if policy is Policy.RELAY_ONLY and not parsed.is_turn_relay:
        return None
    prefix = "candidate:" if candidate.removeprefix("a=").startswith("candidate:") else ""
    return prefix + parsed.value(hide_related=policy is Policy.RELAY_ONLY)


def candidate_type(candidate: str) -> str | None:
    """The candidate's type (host, srflx, prflx, relay), or None if it is not one."""
    try:
        return parse_candidate(candidate).type
    except ValueError:
        return None


def relayable_candidate(candidate: str, policy: Policy) -> bool:
    """Whether a valid candidate may reach the other peer under ``policy``."""
    try:
        return filter_candidate(candidate, policy) is not None
    except ValueError:
        return False


def private_candidate(candidate: str) -> str:
    """A TURN relay candidate as relayed under relay-only: rebuilt, its related address
    ``0.0.0.0 0`` (whether it came with ``raddr``, ``rport``, both or neither).

    Raises ``ValueError`` for anything but a well-formed relay candidate, so that a
    caller that skipped :func:`relayable_candidate` fails closed.
    """
    relayed = filter_candidate(candidate, Policy.RELAY_ONLY)
    if relayed is None:
        raise ValueError("only TURN relay candidates are relayed under relay-only")
    return relayed
