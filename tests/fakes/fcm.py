"""A local FCM HTTP v1 server: the OAuth 2.0 token endpoint (checks the service
account's RS256 assertion) and ``messages:send`` (checks the bearer token, answers as
scripted per device token, else 200).

Documented answers: https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import orjson
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes import serve_locally

PROJECT = "buildxpert-test"


@dataclass
class Reply:
    status: int
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def fcm_error(
    status: int, rpc_status: str, error_code: str | None = None, bad_field: str | None = None
) -> Reply:
    """An error answer shaped like FCM's: google.rpc.Status with FcmError details."""
    details: list[dict[str, Any]] = []
    if error_code is not None:
        details.append(
            {
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": error_code,
            }
        )
    if bad_field is not None:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": bad_field, "description": "Invalid value"}],
            }
        )
    return Reply(
        status,
        {
            "error": {
                "code": status,
                "message": rpc_status.lower(),
                "status": rpc_status,
                "details": details,
            }
        },
    )


class FakeFcm:
    def __init__(self, *, token_delay: float = 0.0) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.token_delay = token_delay  # seconds each token fetch takes
        self.token_fetches = 0
        self.messages: list[dict[str, Any]] = []  # accepted messages
        self.sends = 0  # every messages:send request
        self.script: dict[str, list[Reply]] = {}  # device token -> next answers
        self._access = itertools.count(1)
        self._valid: set[str] = set()
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.delivered = asyncio.Event()

    async def start(self) -> FakeFcm:
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_post("/v1/projects/{project}/messages:send", self._send)
        self._runner, self.url = await serve_locally(app)
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def credentials_file(self, folder: Path) -> Path:
        pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        path = folder / "fcm-service-account.json"
        path.write_bytes(
            orjson.dumps(
                {
                    "type": "service_account",
                    "project_id": PROJECT,
                    "private_key_id": "k1",
                    "private_key": pem,
                    "client_email": f"push@{PROJECT}.iam.gserviceaccount.com",
                    "token_uri": f"{self.url}/token",
                }
            )
        )
        return path

    def expire_access_tokens(self) -> None:
        self._valid.clear()

    def to(self, device_token: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["token"] == device_token]

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        try:
            claims = jwt.decode(
                str(form["assertion"]),
                self._key.public_key(),
                algorithms=["RS256"],
                audience=f"{self.url}/token",
                # Tests move their clock (which signs the assertion) ahead by hours.
                leeway=2 * 86400,
            )
        except (KeyError, jwt.PyJWTError):
            return web.json_response({"error": "invalid_grant"}, status=400)
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" or (
            claims.get("scope") != "https://www.googleapis.com/auth/firebase.messaging"
        ):
            return web.json_response({"error": "invalid_request"}, status=400)
        self.token_fetches += 1
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        token = f"access-{next(self._access)}"
        self._valid.add(token)
        return web.json_response(
            {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}
        )

    async def _send(self, request: web.Request) -> web.Response:
        self.sends += 1
        auth = request.headers.get("authorization", "")
        if request.match_info["project"] != PROJECT:
            return _reply(fcm_error(404, "NOT_FOUND"))
        if not auth.startswith("Bearer ") or auth[7:] not in self._valid:
            return _reply(fcm_error(401, "UNAUTHENTICATED"))
        message = orjson.loads(await request.read())["message"]
        scripted = self.script.get(message["token"])
        if scripted:
            return _reply(scripted.pop(0))
        self.messages.append(message)
        self.delivered.set()
        return web.json_response({"name": f"projects/{PROJECT}/messages/{len(self.messages)}"})


def _reply(reply: Reply) -> web.Response:
    return web.json_response(reply.body, status=reply.status, headers=reply.headers)
