"""Web Push: RFC 8030 (the protocol), RFC 8291 (payload encryption), RFC 8292 (VAPID).

Each push is a POST of the encrypted payload to the subscription's endpoint:

* the payload (JSON: title, body, tag, data) is encrypted for the browser's P-256 key
  and auth secret with ``aes128gcm`` (RFC 8188 content coding, RFC 8291 key
  derivation; ``http_ece`` does the crypto), a fresh sender key and salt each time;
* ``TTL`` is always set (RFC 8030 section 5.2: required), ``Urgency`` follows the
  notice (section 5.3), ``Topic`` replaces an undelivered push of the same collapse
  key (section 5.4; at most 32 base64url characters, so the key is hashed);
* ``Authorization: vapid t=<JWT>, k=<public key>`` (RFC 8292 section 3): an ES256 JWT
  whose ``aud`` is the endpoint's origin, reused until shortly before its expiry.

Answers: 201 (or any 2xx) sent; 404 and 410 the subscription is gone (deleted); 413
too large; 429 and 5xx retried (Retry-After honoured); 401/403 our VAPID key or
subject refused (alert); other 4xx refused.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import http_ece
import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from rtc_server.push.providers.base import Outcome, PushMessage, SendResult, retry_after
from rtc_server.push.providers.http import Http1Client, HttpClient, HttpResponse, TransportError
from storage.push import Device

# RFC 8030 section 7.2: push services must accept at least 4096 octets of payload; we
# send no more, so every service takes it.
MAX_BODY = 4096
# VAPID tokens: at most 24 h (RFC 8292 section 2); ours live 12 h, renewed 1 h early.
_JWT_LIFETIME = 12 * 3600
_JWT_RENEW = 3600


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class VapidKey:
    """The application server's P-256 key pair (RFC 8292)."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey, subject: str) -> None:
        self.private_key = private_key
        self.subject = subject  # mailto: or https: contact of the operator
        self.public_key = b64url(
            private_key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )

    @classmethod
    def from_pem_file(cls, path: Path, subject: str) -> VapidKey:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("the VAPID key must be an EC P-256 private key")
        return cls(key, subject)


class WebPushProvider:
    name = "webpush"

    def __init__(
        self, vapid: VapidKey, *, timeout: float = 10.0, http: HttpClient | None = None
    ) -> None:
        self._vapid = vapid
        self._http = http or Http1Client(timeout=timeout)
        self._tokens: dict[str, tuple[str, float]] = {}  # audience -> (JWT, expiry)

    @property
    def vapid_public_key(self) -> str:
        return self._vapid.public_key

    async def close(self) -> None:
        await self._http.close()

    def _authorization(self, endpoint: str) -> str:
        parts = urlsplit(endpoint)
        audience = f"{parts.scheme}://{parts.netloc}"
        now = time.time()
        cached = self._tokens.get(audience)
        if cached is None or cached[1] - _JWT_RENEW < now:
            expiry = int(now) + _JWT_LIFETIME
            token = jwt.encode(
                {"aud": audience, "exp": expiry, "sub": self._vapid.subject},
                self._vapid.private_key,
                algorithm="ES256",
            )
            cached = (token, expiry)
            self._tokens[audience] = cached
        return f"vapid t={cached[0]}, k={self._vapid.public_key}"

    def encrypt(self, device: Device, plaintext: bytes) -> bytes:
        """RFC 8291 section 3.4: aes128gcm with a fresh sender key and salt."""
        assert device.web_keys is not None
        sender = ec.generate_private_key(ec.SECP256R1())
        body: bytes = http_ece.encrypt(
            plaintext,
            salt=os.urandom(16),
            private_key=sender,
            dh=b64url_decode(device.web_keys["p256dh"]),
            auth_secret=b64url_decode(device.web_keys["auth"]),
            # keyid left out: for aes128gcm it is the sender's public key (RFC 8291 4).
            version="aes128gcm",
        )
        return body

    async def send(self, device: Device, message: PushMessage) -> SendResult:
        notice = message.notice
        plaintext = orjson.dumps(
            {
                "title": notice.title,
                "body": notice.body,
                "tag": notice.collapse_key,
                "call": notice.call,
                "data": message.data(),
            }
        )
        body = self.encrypt(device, plaintext)
        if len(body) > MAX_BODY:
            return SendResult(Outcome.REFUSED, provider_code="too_large")
        headers = {
            "TTL": str(notice.ttl),
            "Urgency": "high" if notice.urgency == "high" or notice.call else "normal",
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            "Authorization": self._authorization(device.token),
        }
        if notice.collapse_key:
            topic = hashlib.sha256(notice.collapse_key.encode()).digest()
            headers["Topic"] = b64url(topic)[:32]
        try:
            response = await self._http.post(device.token, body=body, headers=headers)
        except TransportError as exc:
            return SendResult(Outcome.RETRY, provider_code="network:" + exc.kind)
        return _result(response)


def _result(response: HttpResponse) -> SendResult:
    status = response.status
    if 200 <= status < 300:
        return SendResult(Outcome.SENT, status)
    code = f"http_{status}"
    if status in (404, 410):
        return SendResult(Outcome.TOKEN_INVALID, status, code)
    if status == 413:
        return SendResult(Outcome.REFUSED, status, "too_large")
    if status == 429 or status >= 500:
        return SendResult(
            Outcome.RETRY, status, code, retry_after(response.headers.get("retry-after"))
        )
    if status in (401, 403):
        return SendResult(Outcome.AUTH_ERROR, status, code)
    return SendResult(Outcome.REFUSED, status, code)
