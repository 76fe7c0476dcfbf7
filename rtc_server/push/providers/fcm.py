"""FCM HTTP v1 (https://firebase.google.com/docs/reference/fcm/rest/v1/projects.messages).

Authentication: the service account's private key signs an RS256 JWT that Google's
token endpoint exchanges for an OAuth 2.0 access token (RFC 7523; "Using OAuth 2.0 for
Server to Server Applications"). The token is cached until shortly before it expires;
concurrent sends share one refresh (a lock, checked again inside).

Error rules (https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode):

| answer | what we do |
| --- | --- |
| 200 | sent |
| 404 UNREGISTERED, 403 SENDER_ID_MISMATCH | delete the token |
| 400 INVALID_ARGUMENT | delete the token only if the token is the field at fault, else refuse |
| 401 THIRD_PARTY_AUTH_ERROR | the Firebase project's APNs / Web Push credentials are wrong: |
| | alert, retry later, delete nothing |
| 401 other | refresh the access token once and send again; a second 401 is an auth error |
| 429, 500, 503 | retry: after Retry-After if given, else the queue's backoff |
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import orjson

from kernel.clock import Clock
from rtc_server.push.providers.base import Outcome, PushMessage, SendResult, retry_after
from rtc_server.push.providers.http import (
    Http1Client,
    HttpClient,
    HttpResponse,
    TransportError,
    post_form,
)
from storage.push import Device

log = logging.getLogger("rtc.push")

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
# "The maximum payload for both message types is 4096 bytes" (FCM, About FCM messages).
MAX_PAYLOAD = 4096
# Refresh this long before the access token expires.
_EXPIRY_MARGIN = 60.0
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """The fields of a Google service-account key file that FCM needs."""

    project_id: str
    client_email: str
    private_key: str  # PEM
    private_key_id: str
    token_uri: str

    @classmethod
    def from_file(cls, path: Path) -> ServiceAccount:
        raw = orjson.loads(path.read_bytes())
        return cls(
            project_id=raw["project_id"],
            client_email=raw["client_email"],
            private_key=raw["private_key"],
            private_key_id=raw.get("private_key_id", ""),
            token_uri=raw.get("token_uri", "https://oauth2.googleapis.com/token"),
        )


class AccessTokens:
    """A cached OAuth 2.0 access token of a service account; one refresh at a time."""

    def __init__(self, account: ServiceAccount, http: HttpClient, clock: Clock) -> None:
        self._account = account
        self._http = http
        self._clock = clock
        self._token: str | None = None
        self._expires = 0.0  # clock time, seconds since the epoch
        self._lock = asyncio.Lock()
        self.fetches = 0

    def _now(self) -> float:
        return self._clock.now().timestamp()

    async def get(self) -> str:
        if self._token is not None and self._now() < self._expires:
            return self._token
        async with self._lock:
            if self._token is None or self._now() >= self._expires:
                await self._fetch()
            assert self._token is not None
            return self._token

    async def refresh(self, stale: str) -> str:
        """A token the provider refused: fetch a new one unless another send already did."""
        async with self._lock:
            if self._token == stale or self._token is None:
                await self._fetch()
            assert self._token is not None
            return self._token

    async def _fetch(self) -> None:
        now = int(self._now())
        assertion = jwt.encode(
            {
                "iss": self._account.client_email,
                "scope": SCOPE,
                "aud": self._account.token_uri,
                "iat": now,
                "exp": now + 3600,
            },
            self._account.private_key,
            algorithm="RS256",
            headers={"kid": self._account.private_key_id} if self._account.private_key_id else None,
        )
        self.fetches += 1
        response = await post_form(
            self._http,
            self._account.token_uri,
            {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion},
        )
        if response.status != 200:
            raise TokenError(f"token endpoint answered {response.status}")
        body = response.json()
        self._token = str(body["access_token"])
        self._expires = now + float(body.get("expires_in", 3600)) - _EXPIRY_MARGIN


class TokenError(Exception):
    """The token endpoint refused our service account or could not be reached."""


class FcmProvider:
    name = "fcm"

    def __init__(
        self,
        account: ServiceAccount,
        clock: Clock,
        *,
        endpoint: str = "https://fcm.googleapis.com",
        timeout: float = 10.0,
        http: HttpClient | None = None,
    ) -> None:
        self._http = http or Http1Client(timeout=timeout)
        self._url = f"{endpoint.rstrip('/')}/v1/projects/{account.project_id}/messages:send"
        self.tokens = AccessTokens(account, self._http, clock)

    async def close(self) -> None:
        await self._http.close()

    def build(self, device: Device, message: PushMessage) -> dict[str, Any]:
        """The v1 ``Message`` for one device."""
        notice = message.notice
        high = notice.urgency == "high" or notice.call
        data = message.data()
        body: dict[str, Any] = {"token": device.token, "data": data}
        android: dict[str, Any] = {
            "priority": "HIGH" if high else "NORMAL",
            "ttl": f"{notice.ttl}s",
        }
        if notice.collapse_key:
            android["collapse_key"] = notice.collapse_key
        aps: dict[str, Any] = {}
        if notice.call:
            # A call is data only: the app shows its own ringing screen.
            data.update({"title": notice.title, "body": notice.body})
        else:
            body["notification"] = {"title": notice.title, "body": notice.body}
            aps["sound"] = "default"
        headers = {
            "apns-priority": "10" if high else "5",
            "apns-expiration": str(int(time.time()) + notice.ttl),
        }
        if notice.collapse_key:
            headers["apns-collapse-id"] = notice.collapse_key[:64]
        if notice.call:
            aps["content-available"] = 1
        body["android"] = android
        body["apns"] = {"headers": headers, "payload": {"aps": aps}}
        return {"message": body}

    async def send(self, device: Device, message: PushMessage) -> SendResult:
        payload = self.build(device, message)
        shown = {k: payload["message"].get(k) for k in ("notification", "data")}
        if len(orjson.dumps(shown)) > MAX_PAYLOAD:
            return SendResult(Outcome.REFUSED, provider_code="too_large")
        content = orjson.dumps(payload)
        try:
            token = await self.tokens.get()
            response = await self._post(content, token)
            if response.status == 401 and _error_code(response) != "THIRD_PARTY_AUTH_ERROR":
                token = await self.tokens.refresh(token)
                response = await self._post(content, token)
        except TokenError as exc:
            log.error("fcm: cannot get an access token", extra={"error": str(exc)})
            return SendResult(Outcome.AUTH_ERROR, provider_code="token_endpoint")
        except TransportError as exc:
            return SendResult(Outcome.RETRY, provider_code="network:" + exc.kind)
        return self._result(response)

    async def _post(self, content: bytes, token: str) -> HttpResponse:
        return await self._http.post(
            self._url,
            body=content,
            headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
        )

    def _result(self, response: HttpResponse) -> SendResult:
        status = response.status
        if status == 200:
            return SendResult(Outcome.SENT, status)
        code = _error_code(response)
        if code in ("UNREGISTERED", "SENDER_ID_MISMATCH"):
            return SendResult(Outcome.TOKEN_INVALID, status, code)
        if code == "INVALID_ARGUMENT" or status == 400:
            if _token_at_fault(response):
                return SendResult(Outcome.TOKEN_INVALID, status, code)
            return SendResult(Outcome.REFUSED, status, code)
        if status == 401:
            if code == "THIRD_PARTY_AUTH_ERROR":
                log.error(
                    "fcm: THIRD_PARTY_AUTH_ERROR: the APNs or Web Push credentials in the "
                    "Firebase project are wrong; no token deleted"
                )
            return SendResult(Outcome.AUTH_ERROR, status, code or "UNAUTHENTICATED")
        if status in _RETRY_STATUSES:
            return SendResult(
                Outcome.RETRY, status, code, retry_after(response.headers.get("retry-after"))
            )
        return SendResult(Outcome.REFUSED, status, code)


def _error(response: HttpResponse) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _error_code(response: HttpResponse) -> str | None:
    """The FcmError's errorCode, else the google.rpc status (e.g. INVALID_ARGUMENT)."""
    error = _error(response)
    for detail in error.get("details", []):
        if isinstance(detail, dict) and detail.get("@type", "").endswith("FcmError"):
            code = detail.get("errorCode")
            if isinstance(code, str):
                return code
    status = error.get("status")
    return status if isinstance(status, str) else None


def _token_at_fault(response: HttpResponse) -> bool:
    """Whether a 400's field violations name the registration token."""
    for detail in _error(response).get("details", []):
        if isinstance(detail, dict) and detail.get("@type", "").endswith("BadRequest"):
            for violation in detail.get("fieldViolations", []):
                if isinstance(violation, dict) and violation.get("field") == "message.token":
                    return True
    return False
