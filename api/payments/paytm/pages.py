"""The HTML of the simulator's checkout: what a developer clicks through in a browser.

Plain forms, no inline script or style (the pages are served with a Content Security
Policy that forbids both): the script that submits the callback form by itself, and the
stylesheet, are separate files the simulator serves (:data:`AUTOSUBMIT_JS`,
:data:`STYLESHEET`). Without script the visible "Return to merchant" button does the
same, which is also what Paytm's own redirect page offers.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

__all__ = [
    "AUTOSUBMIT_JS",
    "CALLBACK_FORM_ID",
    "CONTENT_SECURITY_POLICY",
    "STYLESHEET",
    "callback_page",
    "checkout_page",
    "error_page",
]

CALLBACK_FORM_ID = "paytm-callback"
CONTENT_SECURITY_POLICY = "default-src 'none'; script-src 'self'; style-src 'self'; base-uri 'none'"

AUTOSUBMIT_JS = f"""\
// Posts Paytm's callback fields to the merchant, as Paytm's redirect page does.
"use strict";
document.getElementById("{CALLBACK_FORM_ID}").submit();
"""

STYLESHEET = """\
body { font-family: system-ui, sans-serif; max-width: 32rem; margin: 2rem auto;
       padding: 0 1rem; color: #111; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; }
dt { font-weight: 600; }
button { font-size: 1rem; padding: .5rem 1rem; margin: .25rem .5rem .25rem 0; }
.note { color: #555; }
"""

_OUTCOMES = (("success", "Pay"), ("failure", "Fail"), ("pending", "Leave pending"))


def checkout_page(
    *,
    mid: str,
    order_id: str,
    amount: str,
    txn_token: str,
    choose_url: str,
    stylesheet_url: str,
) -> str:
    """Merchant, order and amount, and the three outcomes a developer can choose."""
    buttons = "\n".join(
        f'      <button type="submit" name="outcome" value="{value}">{label}</button>'
        for value, label in _OUTCOMES
    )
    return _document(
        "Paytm simulator: checkout",
        stylesheet_url,
        f"""\
    <h1>Pay ₹{escape(amount)}</h1>
    <dl>
      <dt>Merchant</dt><dd>{escape(mid)}</dd>
      <dt>Order</dt><dd>{escape(order_id)}</dd>
      <dt>Amount</dt><dd>₹{escape(amount)} (INR)</dd>
    </dl>
    <form method="post" action="{escape(choose_url)}">
      <input type="hidden" name="txnToken" value="{escape(txn_token)}">
      <fieldset>
        <legend>How should this payment end?</legend>
{buttons}
      </fieldset>
    </form>
    <p class="note">A local Paytm simulator: no money moves.</p>""",
    )


def callback_page(
    *,
    callback_url: str,
    fields: Mapping[str, str],
    script_url: str,
    stylesheet_url: str,
) -> str:
    """The form that posts Paytm's callback fields to the merchant's callbackUrl."""
    inputs = "\n".join(
        f'      <input type="hidden" name="{escape(name)}" value="{escape(value)}">'
        for name, value in fields.items()
    )
    status = fields.get("STATUS", "")
    return _document(
        "Paytm simulator: returning to the merchant",
        stylesheet_url,
        f"""\
    <h1>Payment {escape(status)}</h1>
    <p>{escape(fields.get("RESPMSG", ""))}</p>
    <form id="{CALLBACK_FORM_ID}" method="post" action="{escape(callback_url)}">
{inputs}
      <button type="submit">Return to merchant</button>
    </form>
    <script src="{escape(script_url)}" defer></script>""",
    )


def error_page(*, code: str, message: str, stylesheet_url: str) -> str:
    return _document(
        "Paytm simulator: error",
        stylesheet_url,
        f"""\
    <h1>This payment cannot continue</h1>
    <p role="alert">{escape(message)} (code {escape(code)})</p>""",
    )


def _document(title: str, stylesheet_url: str, main: str) -> str:
    return f"""\
<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>{escape(title)}</title>
    <link rel="stylesheet" href="{escape(stylesheet_url)}">
  </head>
  <body>
  <main>
{main}
  </main>
  </body>
</html>
"""
