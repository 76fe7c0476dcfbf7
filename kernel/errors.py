"""Errors a client can see, with their stable codes.

Every error that reaches a client is an :class:`RpcError`. It carries a JSON-RPC
``code``, a stable machine-readable ``name`` (``data.error``), a message for humans,
and ``retryable``: whether the same request may succeed later unchanged. Anything
else raised by a method becomes ``internal_error`` and is logged; its details never
reach the client.

.. code-block:: text

    RpcError
    ├── ParseError            -32700  parse_error          not JSON / not UTF-8
    ├── InvalidRequest        -32600  invalid_request      not a JSON-RPC 2.0 request
    ├── MethodNotFound        -32601  method_not_found
    ├── InvalidParams         -32602  invalid_params       data.fields names each field
    ├── InternalError         -32603  internal_error       retryable
    ├── Unauthenticated        4001   unauthenticated      data.reason
    ├── PaymentRequired        4020   payment_required     data.product: what to buy
    ├── Forbidden              4003   forbidden
    ├── NotFound               4004   not_found
    ├── Conflict               4009   conflict
    ├── InvalidCode            4011   invalid_code         data.attemptsLeft
    ├── Unprocessable          4022   unprocessable        a business rule refused it
    ├── RateLimited            4029   rate_limited         retryable, data.retryAfterMs
    ├── Overloaded             4030   overloaded           retryable (too many in flight)
    ├── IdempotencyMismatch    4090   idempotency_mismatch key reused with other params
    ├── StateConflict          4091   state_conflict       not allowed in the current state
    └── ServiceUnavailable     5003   unavailable          retryable (database down ...)

Close codes of the socket are listed in :class:`CloseCode`.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar


class RpcError(Exception):
    code: ClassVar[int] = -32603
    name: ClassVar[str] = "internal_error"
    retryable: ClassVar[bool] = False

    def __init__(
        self, message: str | None = None, *, retryable: bool | None = None, **data: Any
    ) -> None:
        super().__init__(message or self.name.replace("_", " "))
        self.message = message or self.name.replace("_", " ")
        self.data = data
        if retryable is not None:  # this instance differs from its class
            self.retryable = retryable  # type: ignore[misc]

    def to_error(self) -> dict[str, Any]:
        """The JSON-RPC ``error`` member."""
        return {
            "code": self.code,
            "message": self.message,
            "data": {"error": self.name, "retryable": self.retryable, **self.data},
        }


class ParseError(RpcError):
    code, name = -32700, "parse_error"


class InvalidRequest(RpcError):
    code, name = -32600, "invalid_request"


class MethodNotFound(RpcError):
    code, name = -32601, "method_not_found"


class InvalidParams(RpcError):
    code, name = -32602, "invalid_params"


class InternalError(RpcError):
    code, name, retryable = -32603, "internal_error", True


class Unauthenticated(RpcError):
    code, name = 4001, "unauthenticated"


class PaymentRequired(RpcError):
    """Allowed once something is bought: ``data.product`` names it (for
    ``payments.initiate``), ``data.pricePaise`` says what it costs."""

    code, name = 4020, "payment_required"


class Forbidden(RpcError):
    code, name = 4003, "forbidden"


class NotFound(RpcError):
    code, name = 4004, "not_found"


class Conflict(RpcError):
    code, name = 4009, "conflict"


class InvalidCode(RpcError):
    code, name = 4011, "invalid_code"


class Unprocessable(RpcError):
    code, name = 4022, "unprocessable"


class RateLimited(RpcError):
    code, name, retryable = 4029, "rate_limited", True

    def __init__(self, message: str | None = None, *, retry_after: float, **data: Any) -> None:
        super().__init__(message, retryAfterMs=max(1, int(retry_after * 1000)), **data)


class Overloaded(RpcError):
    code, name, retryable = 4030, "overloaded", True


class IdempotencyMismatch(RpcError):
    code, name = 4090, "idempotency_mismatch"


class StateConflict(RpcError):
    """The thing's current state does not allow the action (a booking already accepted,
    cancelled, completed ...), typically because someone else changed it first.

    ``data.status`` is the current state, ``data.action`` what was asked; reload the
    thing rather than retry."""

    code, name = 4091, "state_conflict"


class ServiceUnavailable(RpcError):
    code, name, retryable = 5003, "unavailable", True


ALL_ERRORS: tuple[type[RpcError], ...] = (
    ParseError,
    InvalidRequest,
    MethodNotFound,
    InvalidParams,
    InternalError,
    Unauthenticated,
    PaymentRequired,
    Forbidden,
    NotFound,
    Conflict,
    InvalidCode,
    Unprocessable,
    RateLimited,
    Overloaded,
    IdempotencyMismatch,
    StateConflict,
    ServiceUnavailable,
)


class CloseCode(enum.IntEnum):
    """Websocket close codes the server uses (RFC 6455 section 7.4; 4000-4999 are ours)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    UNSUPPORTED_DATA = 1003  # a binary frame: the protocol is text JSON only
    INVALID_PAYLOAD = 1007  # a text frame that is not UTF-8 (websockets closes itself)
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009  # a frame over server.max_frame_bytes (websockets closes itself)
    INTERNAL_ERROR = 1011  # the server could not resume this socket: reconnect and resume
    SERVICE_RESTART = 1012  # shutting down: reconnect, to another instance if any
    AUTH_TIMEOUT = 4001  # not authenticated within server.auth_timeout: log in again
    TOKEN_EXPIRED = 4002  # the access token expired and was not renewed: refresh, reconnect
    SESSION_REVOKED = 4003  # logged out, revoked, or the account was disabled
    SLOW_CONSUMER = 4008  # the client read too slowly: its send buffer overflowed
    RATE_ABUSE = 4029  # kept sending past the rate limit
