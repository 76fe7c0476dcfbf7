"""Who may open a socket, and from where: the client's address behind trusted proxies,
the browser origins allowed, and the cap on anonymous sockets per address.

The client address is the rightmost ``X-Forwarded-For`` entry not added by one of
``server.trusted_proxies`` (RFC 7239 section 7.4's advice, applied to the de facto
header): walking from the TCP peer leftwards, every hop that is a trusted proxy passes
on the address it saw; the first hop that is not is the client. Entries further left
were written by the client and are never believed. With no trusted proxies the peer is
the client, whatever the headers say.

Browsers send ``Origin`` on a websocket handshake; the mobile apps do not. A handshake
without ``Origin`` is allowed; one with an ``Origin`` must be in
``server.allowed_origins`` (exact ``scheme://host[:port]``, or ``scheme://host:*`` for
any port), else it is refused with HTTP 403: a page on another site cannot drive a
logged-in user's socket. The empty list refuses every browser.

Anonymous sockets (not yet bound to a user) are what a flood is made of: each address
may hold ``server.max_anonymous_per_ip`` of them; one more is closed with 4029 as soon
as it opens. Binding to a user (at the handshake or by ``session.authenticate``) frees
its place.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Sequence

log = logging.getLogger("rtc.server")

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Sequence[str]) -> tuple[IpNetwork, ...]:
    """CIDRs (a bare address is a /32 or /128); ValueError naming the bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r}: not an address or network (CIDR)") from None
    return tuple(networks)


def check_origins(values: Sequence[str]) -> list[str]:
    """Origins as browsers send them: ``scheme://host[:port]`` (``:*``: any port)."""
    for value in values:
        scheme, sep, rest = value.partition("://")
        if scheme not in ("http", "https") or not sep or not rest or "/" in rest:
            raise ValueError(f"{value!r}: an origin is scheme://host[:port], nothing after")
    return [value.lower() for value in values]


class ClientAddress:
    """The client's address behind ``server.trusted_proxies`` (the socket port's, and that
    of the HTTP routes a feature serves: ``Kit.client_address``)."""

    def __init__(self, trusted_proxies: Sequence[str]) -> None:
        self._proxies = parse_networks(trusted_proxies)

    def __call__(self, peer: str | None, forwarded_for: Sequence[str]) -> str | None:
        """The client behind the trusted proxies (``forwarded_for``: the header values)."""
        address = peer
        if not self._proxies or not self._trusted(address):
            return address
        hops = [
            part.strip() for header in forwarded_for for part in header.split(",") if part.strip()
        ]
        for hop in reversed(hops):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                break  # not written by a proxy of ours: stop at the last one we trust
            address = hop
            if not self._trusted(hop):
                break
        return address

    def _trusted(self, address: str | None) -> bool:
        if address is None:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._proxies)


class Admission:
    def __init__(
        self,
        *,
        trusted_proxies: Sequence[str],
        allowed_origins: Sequence[str],
        max_anonymous_per_ip: int,
    ) -> None:
        self.client_address = ClientAddress(trusted_proxies)
        origins = check_origins(allowed_origins)
        self._origins = frozenset(o for o in origins if not o.endswith(":*"))
        self._any_port = tuple(o[:-1] for o in origins if o.endswith(":*"))  # "http://h:"
        self._max_anonymous = max_anonymous_per_ip
        self._anonymous: dict[str | None, int] = {}

    # -- browsers --

    def origin_allowed(self, origin: str | None) -> bool:
        if origin is None:
            return True  # not a browser: the apps send no Origin
        origin = origin.strip().lower()
        if origin in self._origins:
            return True
        prefix, _, port = origin.rpartition(":")
        return port.isdigit() and (prefix + ":") in self._any_port

    # -- anonymous sockets --

    def admit_anonymous(self, address: str | None) -> Callable[[], None] | None:
        """Take a place for an anonymous socket from ``address``: the function that frees
        it (call it once: when the socket is bound or closes), or None when full."""
        held = self._anonymous.get(address, 0)
        if held >= self._max_anonymous:
            return None
        self._anonymous[address] = held + 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            left = self._anonymous[address] - 1
            if left:
                self._anonymous[address] = left
            else:
                del self._anonymous[address]

        return release

    def anonymous_from(self, address: str | None) -> int:
        return self._anonymous.get(address, 0)
