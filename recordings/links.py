"""Signed, expiring download links for recording files.

A link is ``/recordings/<recordingId>/<leg>.ogg?exp=<unix seconds>&u=<user id>&sig=<s>``
with ``s = base64url(HMAC-SHA256(key, "rec:<recordingId>:<leg>:<exp>:<user id>"))``.
The user id names who the link was issued to (the access log says who downloaded
what); changing any part breaks the signature. The HTTP handler recomputes the
signature and compares it in constant time (:func:`hmac.compare_digest`) before it
looks at anything else; an expired link is refused even with a good signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from kernel.signing import UrlSigner

LEGS = ("caller", "callee", "mixed")  # "mixed": both legs in one file


@dataclass(frozen=True, slots=True)
class Grant:
    recording_id: int
    leg: str
    expires: int
    user_id: int


class LinkRefused(Exception):
    """Why a link does not open a file (said to the client as 403)."""


class LinkSigner:
    def __init__(self, key: bytes) -> None:
        self._signer = UrlSigner(key)

    @staticmethod
    def _message(recording_id: int, leg: str, expires: int, user_id: int) -> str:
        return f"rec:{recording_id}:{leg}:{expires}:{user_id}"

    def path(self, grant: Grant) -> str:
        """The link's path and query (the caller prefixes the public base URL)."""
        if grant.leg not in LEGS:
            raise ValueError(f"not a leg: {grant.leg!r}")
        sig = self._signer.sign(
            self._message(grant.recording_id, grant.leg, grant.expires, grant.user_id)
        )
        query = urlencode({"exp": grant.expires, "u": grant.user_id, "sig": sig})
        return f"/recordings/{grant.recording_id}/{grant.leg}.ogg?{query}"

    def verify(self, recording_id: str, leg: str, query: dict[str, str], now: float) -> Grant:
        """The grant a request's path parts and query carry; :class:`LinkRefused` if the
        signature is wrong (checked first, in constant time) or the link expired."""
        sig = query.get("sig", "")
        try:
            rid, expires, user_id = int(recording_id), int(query["exp"]), int(query["u"])
        except (KeyError, ValueError):
            raise LinkRefused("malformed link") from None
        if leg not in LEGS or rid <= 0:
            raise LinkRefused("malformed link")
        if not self._signer.valid(self._message(rid, leg, expires, user_id), sig):
            raise LinkRefused("bad signature")
        if expires <= now:
            raise LinkRefused("link expired")
        return Grant(rid, leg, expires, user_id)
