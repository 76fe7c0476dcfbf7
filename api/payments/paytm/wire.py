"""What travels between a merchant and Paytm: paths, amounts, statuses, result codes.

Shared by the client and the simulator so the two cannot drift apart. Sources:

- Initiate Transaction: https://developer.paytm.com/docs/api/initiate-transaction-api/
- JS Checkout and the checkout page form:
  https://developer.paytm.com/docs/jscheckout-initiate-payment/
- Transaction Status: https://developer.paytm.com/docs/api/v3/transaction-status-api/
- Refund: https://developer.paytm.com/docs/api/refund-api/ and
  https://developer.paytm.com/docs/api/refund-status-api/
- Callback and webhook fields: https://developer.paytm.com/docs/payment-status/

Amounts are rupees as strings with two decimals on the wire ("99.00"); everywhere else
they are integer paise.
"""

from __future__ import annotations

import enum
import re
from decimal import Decimal
from typing import Literal

__all__ = [
    "CALLBACK_FIELDS",
    "Endpoint",
    "MalformedAmount",
    "Outcome",
    "format_amount",
    "parse_amount",
]

#: Where a payment ended up, in our words: TXN_SUCCESS, TXN_FAILURE, PENDING on the wire.
Outcome = Literal["success", "failure", "pending"]


class Endpoint(enum.StrEnum):
    """The gateway's endpoints, by the name the audit log and the simulator use."""

    INITIATE = "initiateTransaction"
    CHECKOUT = "showPaymentPage"
    STATUS = "order/status"
    REFUND = "refund/apply"
    REFUND_STATUS = "refund/status"

    @property
    def path(self) -> str:
        return _PATHS[self]


_PATHS = {
    Endpoint.INITIATE: "/theia/api/v1/initiateTransaction",
    Endpoint.CHECKOUT: "/theia/api/v1/showPaymentPage",
    Endpoint.STATUS: "/v3/order/status",
    Endpoint.REFUND: "/refund/apply",
    Endpoint.REFUND_STATUS: "/v2/refund/status",
}

# resultInfo.resultStatus of the payment and refund APIs, and STATUS of the callback.
TXN_SUCCESS = "TXN_SUCCESS"
TXN_FAILURE = "TXN_FAILURE"
PENDING = "PENDING"
WIRE_STATUS: dict[Outcome, str] = {
    "success": TXN_SUCCESS,
    "failure": TXN_FAILURE,
    "pending": PENDING,
}
OUTCOME_OF: dict[str, Outcome] = {wire: outcome for outcome, wire in WIRE_STATUS.items()}
# resultStatus of Initiate Transaction: S(uccess), F(ailure), U(nknown: a system error).
RESULT_SUCCESS = "S"
RESULT_FAILURE = "F"
RESULT_UNKNOWN = "U"


class Code(enum.StrEnum):
    """resultInfo.resultCode values (RESPCODE in the callback) this package uses."""

    # Initiate Transaction.
    INITIATED = "0000"  # Success
    IDEMPOTENT = "0002"  # Success Idempotent: the same request again, the same token
    REQUEST_INVALID = "1001"  # Request parameters are not valid
    SESSION_EXPIRED = "1006"  # Your Session has expired (txnToken older than 15 min)
    MISSING_ELEMENT = "1007"  # Missing mandatory element
    BAD_CHECKSUM = "2005"  # Checksum provided is invalid
    BAD_MID = "2006"  # Mid is invalid
    BAD_AMOUNT = "2007"  # Txn amount is invalid
    MID_MISMATCH = "2013"  # Mid in the query param doesn't match the Mid sent
    ORDER_MISMATCH = "2014"  # OrderId in the query param doesn't match the OrderId sent
    REPEAT_INCONSISTENT = "2023"  # Repeat Request Inconsistent
    DUPLICATE_ORDER = "325"  # Duplicate Order Id: that order was already paid for
    # Transaction Status (and the callback's RESPCODE).
    TXN_OK = "01"  # Txn Success
    TXN_DECLINED = "227"  # Your payment has been declined by your bank
    NOT_CONFIRMED = "400"  # Transaction status not confirmed yet
    NOT_COMPLETE = "402"  # Looks like the payment is not complete
    STATUS_BAD_CHECKSUM = "330"  # Checksum provided is invalid (status and refund APIs)
    UNKNOWN_ORDER = "334"  # Invalid Order ID
    STATUS_BAD_MID = "335"  # Mid is invalid
    # Refund and Refund Status.
    REFUND_OK = "10"  # Refund Successfull
    REFUND_BAD_REQUEST = "600"  # Invalid refund request or restricted by bank
    REFUND_PENDING = "601"  # Refund request was raised for this transaction...
    REFUND_REPEATED = "617"  # Refund Already Raised
    REFUND_BAD_AMOUNT = "619"  # Invalid refund amount
    REFUND_ORDER_MISMATCH = "627"  # Order Details Mismatch
    REFUND_UNKNOWN = "631"  # Record not found


#: Result codes of the status APIs that say the question was wrong (no such order or
#: refund, bad checksum, bad MID), not how a payment or refund went: refusals.
LOOKUP_ERRORS = frozenset(
    {
        Code.STATUS_BAD_CHECKSUM,
        Code.UNKNOWN_ORDER,
        Code.STATUS_BAD_MID,
        Code.REFUND_UNKNOWN,
    }
)

#: The form fields of the browser callback and of the payment webhook, CHECKSUMHASH
#: aside (https://developer.paytm.com/docs/payment-status/).
CALLBACK_FIELDS = (
    "CURRENCY",
    "GATEWAYNAME",
    "RESPMSG",
    "BANKNAME",
    "PAYMENTMODE",
    "MID",
    "RESPCODE",
    "TXNID",
    "TXNAMOUNT",
    "ORDERID",
    "STATUS",
    "BANKTXNID",
    "TXNDATE",
)

#: orderId and refId: letters, digits and @ - _ . up to 50 characters (Paytm's limit).
REFERENCE = re.compile(r"[A-Za-z0-9@._-]{1,50}")

# Rupees with at most two decimals: no sign, exponent, spaces or non-ASCII digits.
_AMOUNT = re.compile(r"(0|[1-9][0-9]{0,11})(\.[0-9]{1,2})?")


class MalformedAmount(ValueError):
    """An amount on the wire that is not rupees with at most two decimals."""


def format_amount(paise: int) -> str:
    """``9900`` → ``"99.00"``. Raises ``ValueError`` unless ``paise`` is a positive int."""
    if isinstance(paise, bool) or not isinstance(paise, int) or paise <= 0:
        raise ValueError(f"an amount is a positive number of paise, got {paise!r}")
    rupees, rest = divmod(paise, 100)
    return f"{rupees}.{rest:02d}"


def parse_amount(text: object) -> int:
    """``"99.00"`` (or ``"99"``, ``"99.5"``) → ``9900`` paise, exactly.

    Raises :class:`MalformedAmount` for anything else: no float ever rounds an amount.
    """
    if not isinstance(text, str) or _AMOUNT.fullmatch(text) is None:
        raise MalformedAmount(f"not an amount: {text!r}")
    return int(Decimal(text).scaleb(2))
