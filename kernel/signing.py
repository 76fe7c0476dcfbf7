"""Signatures of links in URLs: HMAC-SHA256 under a server key, base64url without
padding. Recordings' downloads and uploads' URLs and files sign their own messages
(``rec:…``, ``upload:put:…``) with it; a verifier recomputes the signature and
compares it in constant time (:func:`hmac.compare_digest`) before it looks at anything
else."""

from __future__ import annotations

import base64
import hashlib
import hmac

MIN_KEY_BYTES = 32


def link_secret(secret: str) -> str:
    """A ``link_secret`` setting: empty (generated once and kept in the database) or a
    key of at least :data:`MIN_KEY_BYTES` bytes."""
    if secret and len(secret.encode()) < MIN_KEY_BYTES:
        raise ValueError(
            f"at least {MIN_KEY_BYTES} bytes (or empty: generated and kept in the database)"
        )
    return secret


class UrlSigner:
    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the link key must be at least {MIN_KEY_BYTES} bytes")
        self._key = key

    def sign(self, message: str) -> str:
        digest = hmac.new(self._key, message.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def valid(self, message: str, signature: str) -> bool:
        """Whether ``signature`` is this key's for ``message`` (constant time)."""
        return hmac.compare_digest(self.sign(message).encode(), signature.encode())
