"""Signed, expiring URLs of uploads on the HTTP port (the scheme of
:mod:`recordings.links`): no user token ever rides in a URL.

- The upload itself: ``PUT /uploads/<uploadId>?exp=<unix seconds>&sig=<s>`` with
  ``s = base64url(HMAC-SHA256(key, "upload:put:<uploadId>:<exp>"))``. It is good for
  one request (the upload row is claimed by the first) until ``exp``.
- A private file: ``GET /uploads/<uploadId>/<image|thumb>?exp=..&u=<user id>&sig=..``
  over ``"upload:get:<uploadId>:<variant>:<exp>:<user id>"``: issued to one user (the
  access log names who fetched what), valid until ``exp``.

The handlers recompute the signature and compare it in constant time
(:func:`hmac.compare_digest`) before anything else; an expired URL is refused even
with a good signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode
from uuid import UUID

from kernel.signing import UrlSigner

VARIANTS = ("image", "thumb")


class LinkRefused(Exception):
    """A URL that opens nothing: ``reason`` is "invalid_link" or "expired"."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FileGrant:
    upload_id: UUID
    variant: str
    expires: int
    user_id: int


class UploadSigner:
    def __init__(self, key: bytes) -> None:
        self._signer = UrlSigner(key)
        self._sign = self._signer.sign

    # --- The upload ---

    def put_path(self, upload_id: UUID, expires: int) -> str:
        sig = self._sign(f"upload:put:{upload_id}:{expires}")
        return f"/uploads/{upload_id}?{urlencode({'exp': expires, 'sig': sig})}"

    def verify_put(self, upload_id: str, query: dict[str, str], now: float) -> UUID:
        try:
            uid, expires = UUID(upload_id), int(query["exp"])
        except (KeyError, ValueError):
            raise LinkRefused("invalid_link", "malformed upload URL") from None
        if not self._signer.valid(f"upload:put:{uid}:{expires}", query.get("sig", "")):
            raise LinkRefused("invalid_link", "bad signature")
        if expires <= now:
            raise LinkRefused("expired", "this upload URL expired: ask uploads.create again")
        return uid

    # --- Private files ---

    @staticmethod
    def _file_message(grant: FileGrant) -> str:
        return f"upload:get:{grant.upload_id}:{grant.variant}:{grant.expires}:{grant.user_id}"

    def file_path(self, grant: FileGrant) -> str:
        if grant.variant not in VARIANTS:
            raise ValueError(f"not a variant: {grant.variant!r}")
        query = urlencode(
            {"exp": grant.expires, "u": grant.user_id, "sig": self._sign(self._file_message(grant))}
        )
        return f"/uploads/{grant.upload_id}/{grant.variant}?{query}"

    def verify_file(
        self, upload_id: str, variant: str, query: dict[str, str], now: float
    ) -> FileGrant:
        try:
            grant = FileGrant(UUID(upload_id), variant, int(query["exp"]), int(query["u"]))
        except (KeyError, ValueError):
            raise LinkRefused("invalid_link", "malformed link") from None
        if variant not in VARIANTS:
            raise LinkRefused("invalid_link", "malformed link")
        if not self._signer.valid(self._file_message(grant), query.get("sig", "")):
            raise LinkRefused("invalid_link", "bad signature")
        if grant.expires <= now:
            raise LinkRefused("expired", "this link expired: ask for a new one")
        return grant
