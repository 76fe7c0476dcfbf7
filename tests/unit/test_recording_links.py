"""Signed recording links: only an untouched, unexpired link opens a file."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from recordings.links import Grant, LinkRefused, LinkSigner

KEY = b"k" * 32
NOW = 1_800_000_000.0


def parts(path: str) -> tuple[str, str, dict[str, str]]:
    url = urlsplit(path)
    _, _, recording_id, file = url.path.split("/")
    return recording_id, file.removesuffix(".ogg"), dict(parse_qsl(url.query))


def test_a_link_verifies_to_its_grant() -> None:
    signer = LinkSigner(KEY)
    grant = Grant(42, "callee", int(NOW) + 300, 7)
    path = signer.path(grant)
    assert path.startswith("/recordings/42/callee.ogg?")
    assert signer.verify(*parts(path), now=NOW) == grant


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda r, leg, q: (r, leg, q | {"exp": str(int(q["exp"]) + 1)}), "bad signature"),
        (lambda r, leg, q: (r, leg, q | {"u": "8"}), "bad signature"),  # another user's
        (lambda r, leg, q: ("43", leg, q), "bad signature"),  # another recording
        (lambda r, leg, q: (r, "caller", q), "bad signature"),  # the other leg
        (lambda r, leg, q: (r, leg, q | {"sig": q["sig"][:-1] + "A"}), "bad signature"),
        (lambda r, leg, q: (r, leg, {k: v for k, v in q.items() if k != "sig"}), "bad signature"),
        (lambda r, leg, q: (r, leg, q | {"exp": "soon"}), "malformed link"),
        (lambda r, leg, q: (r, "both", q), "malformed link"),
    ],
)
def test_a_changed_link_is_refused(change, why) -> None:  # type: ignore[no-untyped-def]
    signer = LinkSigner(KEY)
    path = signer.path(Grant(42, "callee", int(NOW) + 300, 7))
    with pytest.raises(LinkRefused, match=why):
        signer.verify(*change(*parts(path)), now=NOW)


def test_an_expired_link_is_refused_even_with_a_good_signature() -> None:
    signer = LinkSigner(KEY)
    path = signer.path(Grant(42, "caller", int(NOW) + 300, 7))
    assert signer.verify(*parts(path), now=NOW + 299).recording_id == 42
    with pytest.raises(LinkRefused, match="expired"):
        signer.verify(*parts(path), now=NOW + 300)


def test_another_key_does_not_verify() -> None:
    path = LinkSigner(KEY).path(Grant(42, "caller", int(NOW) + 300, 7))
    with pytest.raises(LinkRefused, match="bad signature"):
        LinkSigner(b"x" * 32).verify(*parts(path), now=NOW)


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        LinkSigner(b"short")
