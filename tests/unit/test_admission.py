"""Admission: the client address behind trusted proxies, browser origins, the cap on
anonymous sockets per address."""

from __future__ import annotations

import pytest

from rtc_server.admission import Admission, check_origins, parse_networks


def admission(
    proxies: list[str] | None = None, origins: list[str] | None = None, cap: int = 2
) -> Admission:
    return Admission(
        trusted_proxies=proxies or [],
        allowed_origins=origins or [],
        max_anonymous_per_ip=cap,
    )


LB = ["10.0.0.0/8", "2001:db8::/32"]


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        # No trusted proxy: the peer, whatever the header says.
        ("198.51.100.1", ["203.0.113.9"], "198.51.100.1"),
        # The peer is a proxy of ours: the address it saw.
        ("10.0.0.2", ["203.0.113.9"], "203.0.113.9"),
        # Two of our proxies in a row: the address the outer one saw.
        ("10.0.0.2", ["203.0.113.9, 10.0.0.7"], "203.0.113.9"),
        # Entries written by the client (left of what our proxy added) are not believed.
        ("10.0.0.2", ["6.6.6.6, 203.0.113.9"], "203.0.113.9"),
        ("10.0.0.2", ["10.1.1.1", "203.0.113.9"], "203.0.113.9"),  # two header lines
        # Garbage where a proxy of ours would have written an address: the last we trust.
        ("10.0.0.2", ["not-an-ip"], "10.0.0.2"),
        ("10.0.0.2", ["not-an-ip, 10.0.0.9"], "10.0.0.9"),
        # A trusted peer that added nothing.
        ("10.0.0.2", [], "10.0.0.2"),
        ("2001:db8::5", ["2001:db8::9, 2a00:1450::1"], "2a00:1450::1"),
        (None, ["203.0.113.9"], None),
    ],
)
def test_client_address(peer: str | None, forwarded: list[str], client: str | None) -> None:
    assert admission(LB).client_address(peer, forwarded) == client


def test_without_proxies_the_header_is_ignored() -> None:
    assert admission().client_address("10.0.0.2", ["203.0.113.9"]) == "10.0.0.2"


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),  # the apps send no Origin
        ("https://admin.example.com", True),
        ("HTTPS://ADMIN.EXAMPLE.COM", True),
        ("https://admin.example.com:443", False),  # exact, as browsers send it
        ("https://evil.example.com", False),
        ("http://admin.example.com", False),
        ("http://127.0.0.1:5173", True),
        ("http://127.0.0.1", False),
        ("http://127.0.0.1:x", False),
        ("null", False),  # sandboxed frames, file:// pages
    ],
)
def test_origins(origin: str | None, allowed: bool) -> None:
    gate = admission(origins=["https://admin.example.com", "http://127.0.0.1:*"])
    assert gate.origin_allowed(origin) is allowed


def test_an_empty_list_refuses_every_browser() -> None:
    gate = admission()
    assert gate.origin_allowed(None)
    assert not gate.origin_allowed("http://127.0.0.1:8766")


def test_anonymous_places_per_address() -> None:
    gate = admission(cap=2)
    first, second = gate.admit_anonymous("a"), gate.admit_anonymous("a")
    assert first is not None and second is not None
    assert gate.admit_anonymous("a") is None  # full
    assert gate.admit_anonymous("b") is not None  # another address has its own
    first()
    first()  # freeing twice frees once
    assert gate.anonymous_from("a") == 1
    third = gate.admit_anonymous("a")
    assert third is not None and gate.admit_anonymous("a") is None
    second()
    third()
    assert gate.anonymous_from("a") == 0


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "example.com", ""])
def test_bad_networks_are_named(bad: str) -> None:
    with pytest.raises(ValueError, match="not an address or network"):
        parse_networks([bad])


@pytest.mark.parametrize("bad", ["admin.example.com", "https://a.example.com/", "ftp://a.b"])
def test_bad_origins_are_named(bad: str) -> None:
    with pytest.raises(ValueError, match="an origin is"):
        check_origins([bad])
