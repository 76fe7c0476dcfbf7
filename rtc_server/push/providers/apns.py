"""APNs, the provider API over HTTP/2 with token-based authentication.

(Apple: "Sending notification requests to APNs", "Establishing a token-based
connection to APNs", "Handling notification responses from APNs".)

* One HTTP/2 connection (``httpx`` with ``h2``) multiplexes every request.
* The provider token is an ES256 JWT (``kid`` the key id, ``iss`` the team id, ``iat``),
  signed with the .p8 key; Apple refuses one older than an hour and one renewed more
  often than every 20 minutes, so it is reused for 40 minutes (and renewed at once if
  APNs answers ``ExpiredProviderToken``).
* Headers: ``apns-push-type`` (``alert``), ``apns-priority`` (10: now, for offers and
  calls; 5: when convenient), ``apns-expiration`` (now + the notice's ttl, so a call's
  push dies with its ring), ``apns-collapse-id`` (the collapse key, at most 64 bytes),
  ``apns-topic`` (the app's bundle id). A call is a time-sensitive alert.

| APNs answer | what we do |
| --- | --- |
| 200 | sent |
| 410 Unregistered, ExpiredToken | delete the token, unless registered after ``timestamp`` |
| 400 BadDeviceToken, DeviceTokenNotForTopic | delete the token |
| 403 ExpiredProviderToken | new provider token, send once more |
| 403 InvalidProviderToken, other 403 | our key or team id is wrong: alert, retry |
| 413, other 400 | refused |
| 429, 500, 503 | retry (Retry-After honoured if present) |
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from rtc_server.push.providers.base import Outcome, PushMessage, SendResult, retry_after
from rtc_server.push.providers.http import Http2Client, HttpClient, HttpResponse, TransportError
from storage.push import Device

# "The maximum size of a notification payload is 4 KB (4096 bytes)" (5 KB for VoIP).
MAX_PAYLOAD = 4096
# Reuse a provider token this long: Apple wants 20-60 minutes.
TOKEN_REUSE = 40 * 60
_DEAD_TOKEN_REASONS = frozenset({"BadDeviceToken", "DeviceTokenNotForTopic"})
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class ApnsKey:
    """The token-signing key from the Apple developer account (a .p8 file)."""

    private_key: ec.EllipticCurvePrivateKey
    key_id: str
    team_id: str

    @classmethod
    def from_p8_file(cls, path: Path, key_id: str, team_id: str) -> ApnsKey:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("an APNs key must be an EC P-256 private key (.p8)")
        return cls(key, key_id, team_id)


class ApnsProvider:
    name = "apns"

    def __init__(
        self,
        key: ApnsKey,
        topic: str,
        *,
        endpoint: str = "https://api.push.apple.com",
        timeout: float = 10.0,
        http: HttpClient | None = None,
    ) -> None:
        self._key = key
        self._topic = topic
        self._endpoint = endpoint.rstrip("/")
        self._http = http or Http2Client(timeout=timeout)  # APNs has no HTTP/1.1
        self._token: tuple[str, float] | None = None
        self.tokens_made = 0

    async def close(self) -> None:
        await self._http.close()

    def provider_token(self, *, renew: bool = False) -> str:
        now = time.time()
        if renew or self._token is None or now - self._token[1] >= TOKEN_REUSE:
            token = jwt.encode(
                {"iss": self._key.team_id, "iat": int(now)},
                self._key.private_key,
                algorithm="ES256",
                headers={"kid": self._key.key_id},
            )
            self._token = (token, now)
            self.tokens_made += 1
        return self._token[0]

    def build(self, message: PushMessage) -> tuple[dict[str, str], bytes]:
        notice = message.notice
        aps: dict[str, Any] = {"alert": {"title": notice.title, "body": notice.body}}
        if notice.call:
            aps["interruption-level"] = "time-sensitive"
        aps["sound"] = "default"
        if notice.collapse_key:
            aps["thread-id"] = notice.collapse_key
        payload = orjson.dumps({"aps": aps, **message.data()})
        high = notice.urgency == "high" or notice.call
        headers = {
            "apns-push-type": "alert",
            "apns-priority": "10" if high else "5",
            "apns-expiration": str(int(time.time()) + notice.ttl),
            "apns-topic": self._topic,
        }
        if notice.collapse_key:
            headers["apns-collapse-id"] = notice.collapse_key.encode()[:64].decode(errors="ignore")
        return headers, payload

    async def send(self, device: Device, message: PushMessage) -> SendResult:
        headers, payload = self.build(message)
        if len(payload) > MAX_PAYLOAD:
            return SendResult(Outcome.REFUSED, provider_code="too_large")
        url = f"{self._endpoint}/3/device/{device.token}"
        try:
            response = await self._post(url, headers, payload, renew=False)
            if response.status == 403 and _reason(response) == "ExpiredProviderToken":
                response = await self._post(url, headers, payload, renew=True)
        except TransportError as exc:
            return SendResult(Outcome.RETRY, provider_code="network:" + exc.kind)
        return _result(response)

    async def _post(
        self, url: str, headers: dict[str, str], payload: bytes, *, renew: bool
    ) -> HttpResponse:
        auth = {"authorization": f"bearer {self.provider_token(renew=renew)}"}
        return await self._http.post(url, body=payload, headers={**headers, **auth})


def _body(response: HttpResponse) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _reason(response: HttpResponse) -> str | None:
    reason = _body(response).get("reason")
    return reason if isinstance(reason, str) else None


def _result(response: HttpResponse) -> SendResult:
    status = response.status
    if status == 200:
        return SendResult(Outcome.SENT, status, None)
    reason = _reason(response)
    if status == 410:
        stamp = _body(response).get("timestamp")
        since = (
            datetime.fromtimestamp(int(stamp) / 1000, UTC)
            if isinstance(stamp, int | str) and str(stamp).isdigit()
            else None
        )
        return SendResult(Outcome.TOKEN_INVALID, status, reason, invalid_since=since)
    if status == 400 and reason in _DEAD_TOKEN_REASONS:
        return SendResult(Outcome.TOKEN_INVALID, status, reason)
    if status == 403:
        return SendResult(Outcome.AUTH_ERROR, status, reason)
    if status == 413:
        return SendResult(Outcome.REFUSED, status, reason or "PayloadTooLarge")
    if status in _RETRY_STATUSES:
        return SendResult(
            Outcome.RETRY, status, reason, retry_after(response.headers.get("retry-after"))
        )
    return SendResult(Outcome.REFUSED, status, reason)
