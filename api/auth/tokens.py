"""Session credentials handed out after a successful OTP login, with no I/O.

Two kinds of token:

* **Access token** — a short-lived JWT (RFC 7519) signed with HS256 (RFC 7518 §3.2),
  checked on every websocket ``authenticate`` without touching the database. Claims:
  ``iss``, ``sub`` (user id as a decimal string), ``role``, ``sid`` (session UUID),
  ``jti`` (32 hex digits), ``iat``, ``exp`` (whole seconds), ``typ`` = ``"access"``.
* **Refresh token** — an opaque random string the database knows only by its SHA-256
  hash; it is exchanged for a new access token and can be revoked server side.

Exceptions::

    TokenError
     ├── TokenExpired   the token was good but its time has passed: refresh
     └── TokenInvalid   never good: bad signature, algorithm other than HS256 (incl.
                        "none"), wrong issuer or type, missing or mistyped claims,
                        malformed or oversized input: log in again

No PyJWT exception escapes this module. Time is always the caller's ``now``, never
the wall clock, so expiry is tested with a fake clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import jwt
import orjson

__all__ = [
    "MAX_ACCESS_TOKEN_LENGTH",
    "REFRESH_TOKEN_LENGTH",
    "AccessClaims",
    "AccessTokens",
    "TokenError",
    "TokenExpired",
    "TokenInvalid",
    "hash_refresh_token",
    "looks_like_refresh_token",
    "new_refresh_token",
]

MAX_ACCESS_TOKEN_LENGTH: Final = 4096
"""Longer input is refused before parsing; our tokens are around 350 characters."""

_ALGORITHM: Final = "HS256"
_MIN_SECRET_BYTES: Final = 32  # RFC 7518 §3.2: a key at least as long as the hash output
_TOKEN_TYPE: Final = "access"
_REQUIRED_CLAIMS: Final = ("iss", "sub", "role", "sid", "jti", "iat", "exp", "typ")
_ISSUED_CLAIMS: Final = frozenset(_REQUIRED_CLAIMS)  # what issue() writes, no more
_STRING_CLAIMS: Final = ("iss", "sub", "role", "sid", "jti", "typ")
# JWS compact serialization (RFC 7515 §7.1): three base64url parts, none empty here.
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_USER_ID = re.compile(r"[1-9][0-9]{0,18}")
_MAX_USER_ID: Final = 2**63 - 1  # PostgreSQL bigint


class TokenError(Exception):
    """A presented token cannot authenticate anyone."""


class TokenExpired(TokenError):
    """The token was issued by us but has expired; a refresh can help."""


class TokenInvalid(TokenError):
    """The token was never valid (or not for this purpose); only a new login helps."""


@dataclass(frozen=True)
class AccessClaims:
    """What a verified access token says. Times are whole seconds, in UTC."""

    user_id: int
    role: str
    session_id: uuid.UUID
    jti: str
    issued_at: datetime
    expires_at: datetime


def _new_jti() -> str:
    return uuid.uuid4().hex


class AccessTokens:
    """Issues and verifies access tokens with one HS256 secret."""

    def __init__(
        self,
        secret: bytes,
        ttl: timedelta = timedelta(minutes=15),
        issuer: str = "buildxpert-rtc",
        leeway: timedelta = timedelta(seconds=5),
        *,
        new_jti: Callable[[], str] = _new_jti,
    ) -> None:
        """``leeway`` tolerates clock skew between the nodes that issue and verify.

        ``new_jti`` is the token-id factory, injectable for deterministic tests.
        """
        if len(secret) < _MIN_SECRET_BYTES:
            raise ValueError(f"the secret must be at least {_MIN_SECRET_BYTES} bytes")
        if ttl < timedelta(seconds=1) or ttl % timedelta(seconds=1):
            raise ValueError("ttl must be a positive whole number of seconds")
        if leeway < timedelta(0):
            raise ValueError("leeway must not be negative")
        if not issuer:
            raise ValueError("issuer must not be empty")
        self._secret = secret
        self._ttl = ttl
        self._issuer = issuer
        self._leeway = leeway
        self._new_jti = new_jti
        # The header segment every token issue() signs, as PyJWT spells it.
        self._header = jwt.encode({}, secret, algorithm=_ALGORITHM).partition(".")[0]

    def issue(
        self, user_id: int, role: str, session_id: uuid.UUID, now: datetime
    ) -> tuple[str, AccessClaims]:
        """Return a signed token and the claims it carries, issued at ``now``.

        ``iat`` is ``now`` rounded down to the second (NumericDate, RFC 7519 §2), so
        the returned claims equal what :meth:`verify` will read back.
        """
        _require_aware(now)
        if isinstance(user_id, bool) or not 1 <= user_id <= _MAX_USER_ID:
            raise ValueError("user_id must be a positive 64-bit integer")
        if not role:
            raise ValueError("role must not be empty")
        iat = math.floor(now.timestamp())
        exp = iat + int(self._ttl.total_seconds())
        claims = AccessClaims(
            user_id=user_id,
            role=role,
            session_id=session_id,
            jti=self._new_jti(),
            issued_at=_from_numeric_date(iat),
            expires_at=_from_numeric_date(exp),
        )
        payload = {
            "iss": self._issuer,
            "sub": str(user_id),
            "role": role,
            "sid": str(session_id),
            "jti": claims.jti,
            "iat": iat,
            "exp": exp,
            "typ": _TOKEN_TYPE,
        }
        return jwt.encode(payload, self._secret, algorithm=_ALGORITHM), claims

    def verify(self, token: str, now: datetime) -> AccessClaims:
        """Return the claims of a token we issued that is still valid at ``now``.

        Signature, algorithm (HS256 only), issuer and claim types are checked first,
        so :class:`TokenExpired` is only ever raised for a genuine token. Expired means
        ``now >= exp + leeway`` (RFC 7519 §4.1.4); a token issued more than ``leeway``
        after ``now`` is invalid.
        """
        _require_aware(now)
        if not isinstance(token, str) or len(token) > MAX_ACCESS_TOKEN_LENGTH:
            raise TokenInvalid("token missing or too long")
        if _COMPACT_JWS.fullmatch(token) is None:
            raise TokenInvalid("malformed token")
        claims = _claims_from_payload(self._decode(token))
        if claims.issued_at > now + self._leeway:
            raise TokenInvalid("token issued in the future")
        if now >= claims.expires_at + self._leeway:
            raise TokenExpired("token expired")
        return claims

    def _decode(self, token: str) -> dict[str, Any]:
        if token.startswith(self._header) and token[len(self._header)] == ".":
            payload = self._decode_issued(token)
            if payload is not None:
                return payload
        return self._decode_any(token)

    def _decode_issued(self, token: str) -> dict[str, Any] | None:
        """The payload of a token exactly as :meth:`issue` makes them, signed with our
        key; else None.

        PyJWT's generic decoding took about 60 µs of a socket handshake; such a token
        needs one HMAC, two base64 conversions and one JSON parse (about 6 µs). Only
        acceptance is decided here, and only for what PyJWT's ``decode`` would return
        unchanged with the options of :meth:`_decode_any`: the MAC over
        ``header.payload`` with our key (RFC 7515 §5.2), compared in constant time in
        its canonical base64url spelling (PyJWT refuses the others), a payload in its
        canonical spelling with exactly our claims, each of the type we issue (JSON
        numbers beyond 64 bits, which orjson would read differently from PyJWT, and any
        other claim, go to PyJWT). Every other token, valid or not, goes to PyJWT,
        which decides it and its reason; ``tests/unit/test_tokens.py`` holds the two
        to the same answers.
        """
        signing_input, _, signature = token.rpartition(".")
        body = signing_input[len(self._header) + 1 :]
        mac = hmac.digest(self._secret, signing_input.encode("ascii"), "sha256")
        if not hmac.compare_digest(_b64url(mac), signature.encode("ascii")):
            return None
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            payload = orjson.loads(raw)
        except (binascii.Error, ValueError):  # orjson.JSONDecodeError is a ValueError
            return None
        if (
            _b64url(raw) != body.encode("ascii")
            or not isinstance(payload, dict)
            or payload.keys() != _ISSUED_CLAIMS
            or any(type(payload[claim]) is not str for claim in _STRING_CLAIMS)
            or type(payload["iat"]) is not int
            or type(payload["exp"]) is not int
            or payload["iss"] != self._issuer
        ):
            return None
        return payload

    def _decode_any(self, token: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                self._secret,
                algorithms=[_ALGORITHM],  # pinned: never trust the header's "alg"
                issuer=self._issuer,
                options={
                    "require": list(_REQUIRED_CLAIMS),
                    # PyJWT would check these against the wall clock; verify() checks
                    # them against the injected now instead.
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidSignatureError as exc:
            raise TokenInvalid("bad signature") from exc
        except jwt.InvalidAlgorithmError as exc:
            raise TokenInvalid("algorithm not allowed") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenInvalid("wrong issuer") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise TokenInvalid(f"missing claim {exc.claim!r}") from exc
        except jwt.PyJWTError as exc:
            raise TokenInvalid("malformed token") from exc


def _b64url(data: bytes) -> bytes:
    """Unpadded base64url (RFC 7515 §2), the only spelling PyJWT accepts."""
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _claims_from_payload(payload: dict[str, Any]) -> AccessClaims:
    """Read the claims of a correctly signed payload, refusing any unexpected shape."""
    if payload["typ"] != _TOKEN_TYPE:
        raise TokenInvalid("not an access token")
    sub, role, sid, jti = payload["sub"], payload["role"], payload["sid"], payload["jti"]
    iat, exp = payload["iat"], payload["exp"]
    if not isinstance(sub, str) or _USER_ID.fullmatch(sub) is None:
        raise TokenInvalid("bad sub claim")
    user_id = int(sub)
    if user_id > _MAX_USER_ID:
        raise TokenInvalid("bad sub claim")
    if not isinstance(role, str) or not role:
        raise TokenInvalid("bad role claim")
    if not isinstance(jti, str) or not jti:
        raise TokenInvalid("bad jti claim")
    session_id = _parse_session_id(sid)
    if not _is_numeric_date(iat) or not _is_numeric_date(exp) or exp <= iat:
        raise TokenInvalid("bad iat or exp claim")
    return AccessClaims(
        user_id=user_id,
        role=role,
        session_id=session_id,
        jti=jti,
        issued_at=_from_numeric_date(iat),
        expires_at=_from_numeric_date(exp),
    )


def _parse_session_id(sid: object) -> uuid.UUID:
    if not isinstance(sid, str):
        raise TokenInvalid("bad sid claim")
    try:
        session_id = uuid.UUID(sid)
    except ValueError as exc:
        raise TokenInvalid("bad sid claim") from exc
    if str(session_id) != sid:  # only the canonical spelling we issue
        raise TokenInvalid("bad sid claim")
    return session_id


# Whole seconds from 1970 up to year 9999, the range datetime can represent.
_MAX_NUMERIC_DATE: Final = 253_402_300_799


def _is_numeric_date(value: object) -> bool:
    return (
        isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_NUMERIC_DATE
    )


def _from_numeric_date(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")


# --- Refresh tokens --------------------------------------------------------------------

_REFRESH_TOKEN_BYTES: Final = 48
REFRESH_TOKEN_LENGTH: Final = 64
"""A refresh token is 48 random bytes (384 bits) in unpadded base64url (RFC 4648 §5):
exactly 64 characters from ``A-Z a-z 0-9 - _``, the format of
``secrets.token_urlsafe(48)``. It carries no meaning; the server stores its hash."""
_REFRESH_TOKEN_SHAPE = re.compile(rf"[A-Za-z0-9_-]{{{REFRESH_TOKEN_LENGTH}}}")


def new_refresh_token(*, token_bytes: Callable[[int], bytes] = secrets.token_bytes) -> str:
    """Return a fresh refresh token; ``token_bytes`` is injectable for tests."""
    raw = token_bytes(_REFRESH_TOKEN_BYTES)
    if len(raw) != _REFRESH_TOKEN_BYTES:
        raise ValueError(f"token_bytes returned {len(raw)} bytes, not {_REFRESH_TOKEN_BYTES}")
    return _b64url(raw).decode("ascii")


def looks_like_refresh_token(token: object) -> bool:
    """Whether ``token`` has the refresh token format (cheap; checked before hashing
    or a database lookup, so absurd input never reaches either)."""
    return isinstance(token, str) and _REFRESH_TOKEN_SHAPE.fullmatch(token) is not None


def hash_refresh_token(token: str) -> bytes:
    """SHA-256 of the token: the only form the database keeps.

    A plain hash is enough because the token has 384 bits of entropy: nothing can be
    guessed offline, unlike the 6-digit OTP, which needs a keyed HMAC. Raises
    :class:`TokenInvalid` for anything that does not look like a refresh token.
    """
    if not looks_like_refresh_token(token):
        raise TokenInvalid("malformed refresh token")
    return hashlib.sha256(token.encode("ascii")).digest()
