"""The checkout a person clicks through: a real browser (headless Chromium) on the
embedded default gateway, the Paytm simulator served by the server itself.

The app's WebView posts the checkout (mid, orderId, txnToken) to the gateway's payment
page; the person presses "Pay"; the gateway sends the browser back to the server's
callback, which answers "Payment received"; the provider's socket hears it is paid.
"""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import AppFactory, Clients, CodeLog
from .payments import initiate, paid, registered
from .test_browser_call import CHROMIUM_ARGS, chromium_binary

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Any]:
    binary = chromium_binary()
    playwright_api = pytest.importorskip(
        "playwright.async_api",
        reason="Playwright is not installed: pip install -e '.[test]' (.ci/run does)",
    )
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=binary, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield await browser.new_page()
        finally:
            await browser.close()


def webview_form(checkout: dict[str, Any]) -> str:
    """What an app's WebView loads: a form posting the checkout to the gateway."""
    fields = {
        "mid": checkout["mid"],
        "orderId": checkout["orderId"],
        "txnToken": checkout["txnToken"],
    }
    inputs = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(value)}">'
        for name, value in fields.items()
    )
    action = html.escape(checkout["checkout"]["paymentPageUrl"])
    return f'<form method="post" action="{action}">{inputs}<button>Checkout</button></form>'


async def test_a_person_pays_on_the_simulators_checkout_page(
    make_app: AppFactory, code_log: CodeLog, page: Any, tmp_path: Path
) -> None:
    app = await make_app()  # the embedded default: payments.gateway = "simulator"
    clients = Clients(app, code_log)
    try:
        provider = await registered(clients, app)
        checkout = await initiate(provider.client, providerServiceId=provider.listing)
        assert checkout["checkout"]["paymentPageUrl"].startswith(
            f"http://127.0.0.1:{app.http.port}/simulator/paytm/"
        )
        await page.set_content(webview_form(checkout))
        await page.click("text=Checkout")
        await page.wait_for_selector("text=Pay ₹99.00")
        await page.screenshot(path=str(tmp_path / "checkout.png"))
        await page.click("button:has-text('Pay')")
        await page.wait_for_selector("text=Payment received", timeout=15_000)
        assert page.url == checkout["checkout"]["callbackUrl"]
        payment = await paid(provider.client, checkout["orderId"])
        assert payment["amountPaise"] == 9900
        verified = await provider.client.call("payments.verify", {"orderId": checkout["orderId"]})
        assert verified["status"] == "paid"
    finally:
        await clients.close()
