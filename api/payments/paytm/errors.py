"""The exception tree of the Paytm client.

Every failure of :class:`~api.payments.paytm.client.PaytmClient` is one of these; no
httpx exception escapes it (``raise GatewayUnavailable(...) from exc``).

.. code-block:: text

    GatewayError                 retryable
    ├── GatewayUnavailable       True   timeout, connection error, HTTP 5xx, a body that
    │                                   is not the documented JSON, resultStatus "U"
    ├── GatewayRefused           False  a documented failure resultInfo (code, message)
    └── BadGatewaySignature      False  the answer is not authentic: its signature does
                                        not verify, is missing where one is required, or
                                        it is a signed answer about another order

``retryable`` says whether sending the same request again can succeed. Paytm makes that
safe: a repeated Initiate Transaction with the same parameters answers "Success
Idempotent" with the same token, and the status APIs only read.

:class:`BadGatewaySignature` is a security event (a forged or replayed answer, or a
wrong merchant key): log it loudly; retrying will not fix it.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = ["BadGatewaySignature", "GatewayError", "GatewayRefused", "GatewayUnavailable"]


class GatewayError(Exception):
    """Base class of every failure of a call to Paytm."""

    retryable: ClassVar[bool] = False


class GatewayUnavailable(GatewayError):
    """Paytm could not be reached or gave no usable answer; the same call may succeed."""

    retryable = True


class GatewayRefused(GatewayError):
    """Paytm answered with a documented failure: ``code`` and ``message`` are its
    resultInfo.resultCode and resultMsg."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"Paytm refused ({code}): {message}")
        self.code = code
        self.message = message


class BadGatewaySignature(GatewayError):
    """An answer that cannot be trusted to come from Paytm for this request."""
