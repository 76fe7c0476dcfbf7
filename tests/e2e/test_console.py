"""The admin console for real: its page from the HTTP port of a real server, in headless
Chromium (Debian's ``chromium`` driven by Playwright, as the browser call test does),
talking to the server's socket port with the JavaScript client of clients/js.

An admin logs in with the code the development SMS sender logged; a recorded call
between two aiortc parties shows live in the table, its duration runs, it leaves when
it ends, and its recording plays in the page; a user is unverified and verified again
from the page; a non-admin is refused by the page and by the server; a socket dropped
under the page resumes without showing an event twice or missing one. Every page is
checked for Content-Security-Policy violations, and each screen is photographed into
``test-artifacts/console/`` (git-ignored) for people to look at.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import aiohttp
import pytest
from websockets.exceptions import InvalidStatus

from api.payments.callback import WEBHOOK_PATH
from api.payments.paytm.simulator import PaytmSimulator
from recordings.feature import RecordingsFeature
from rtc_server.app import App
from rtc_server.client import RtcClient
from rtc_server.console.site import STATIC
from rtc_server.sink import WebSocketSink
from storage import accounts
from tests.integration.paytm_env import MID
from tests.waiting import until

from .admins import login_admin
from .calls import booked, start, step
from .conftest import AppFactory, Clients, CodeLog, e164, ws_url
from .market import key, later, market, next_of, refused
from .payments import gateway, paid
from .recorded import RecordedParty
from .test_browser_call import CHROMIUM_ARGS, chromium_binary
from .test_recorded_calls import mixed_of

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "console"
# The console's origin is the HTTP port's, the socket port is another: allowed here.
CONSOLE_ORIGIN = {"allowed_origins": ["http://127.0.0.1:*"]}
CALLER_HZ, CALLEE_HZ = 440.0, 660.0
PACKETS = 200  # 4 s of audio per party
CALL_MS = PACKETS * 20
# Where the page keeps its refresh token: its sessionStorage prefix and the client's key.
REFRESH_TOKEN_KEY = "buildxpert-console:rtc.refreshToken"


def console_url(app: App, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{app.http.port}/admin/"


# --- The page over HTTP -------------------------------------------------------------


async def get(url: str, **headers: str) -> tuple[int, bytes, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers=headers, allow_redirects=False) as answer:
            return answer.status, await answer.read(), answer.headers


async def test_the_page_is_served_with_a_strict_policy(make_app: AppFactory) -> None:
    app = await make_app(server=CONSOLE_ORIGIN)
    status, body, headers = await get(console_url(app))
    assert status == 200 and b'<script type="module" src="app.js">' in body
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    socket_origin = f"ws://127.0.0.1:{app.sockets.port}"
    http_origin = f"http://127.0.0.1:{app.http.port}"
    policy = headers["Content-Security-Policy"]
    assert policy == (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        f"connect-src 'self' {socket_origin}; img-src 'self' data:; "
        f"media-src 'self' {http_origin}; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'none'"
    )
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    # The page learns the socket port from a file of its own (no inline script).
    status, body, headers = await get(console_url(app) + "config.json")
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert body == f'{{"socketUrl":"{socket_origin}/ws"}}'.encode()
    assert "Content-Security-Policy" in headers
    # The same socket port, on the host the page was loaded from.
    _, body, _ = await get(console_url(app) + "config.json", Host=f"localhost:{app.http.port}")
    assert body == f'{{"socketUrl":"ws://localhost:{app.sockets.port}/ws"}}'.encode()
    status, _, _ = await get(console_url(app) + "config.json", Host="bad host; x")
    assert status == 400
    # Scripts with their type; unchanged files answer 304; anything else 404, with the
    # same headers; /admin goes to /admin/.
    status, body, headers = await get(console_url(app) + "vendor/rtc-client.js")
    assert status == 200 and headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert body == (STATIC / "vendor" / "rtc-client.js").read_bytes()
    status, _, _ = await get(console_url(app) + "app.js", **{"If-None-Match": headers["ETag"]})
    assert status == 200  # another file's tag
    _, _, app_js = await get(console_url(app) + "app.js")
    status, _, _ = await get(console_url(app) + "app.js", **{"If-None-Match": app_js["ETag"]})
    assert status == 304
    for missing in ("nothing.js", "feature.py", "static/app.js", "vendor/"):
        status, _, headers = await get(console_url(app) + missing)
        assert (status, headers.get("X-Frame-Options")) == (404, "DENY"), missing
    for outside in ("../console/settings.py", "%2e%2e/site.py"):
        status, _, _ = await get(console_url(app) + outside)
        assert status == 404, outside
    status, _, headers = await get(f"http://127.0.0.1:{app.http.port}/admin")
    assert status == 308 and headers["Location"] == "/admin/"


async def test_a_configured_socket_url_is_given_and_allowed(make_app: AppFactory) -> None:
    app = await make_app(
        console={"socket_url": "wss://api.example.com/ws"},
        recordings={"public_url": "https://media.example.com"},
    )
    _, body, headers = await get(console_url(app) + "config.json")
    assert body == b'{"socketUrl":"wss://api.example.com/ws"}'
    policy = headers["Content-Security-Policy"]
    assert "connect-src 'self' wss://api.example.com;" in policy
    assert "media-src 'self' https://media.example.com;" in policy


async def test_the_console_can_be_switched_off(make_app: AppFactory) -> None:
    app = await make_app(console={"enabled": False})
    status, _, _ = await get(console_url(app))
    assert status == 404


async def test_the_socket_port_takes_the_consoles_origin_and_refuses_others(
    make_app: AppFactory,
) -> None:
    app = await make_app(server={"allowed_origins": ["http://127.0.0.1:8766"]})
    client = await RtcClient.connect(ws_url(app), origin="http://127.0.0.1:8766")
    try:
        assert (await client.call("system.ping"))["pong"] is True
    finally:
        await client.close()
    for origin in ("http://localhost:8766", "http://127.0.0.1:8767", "https://127.0.0.1:8766"):
        with pytest.raises(InvalidStatus) as refused:
            await RtcClient.connect(ws_url(app), origin=origin)
        assert refused.value.response.status_code == 403, origin


async def test_pip_install_ships_the_page(tmp_path: Path) -> None:
    """A wheel built from the tree holds every file of the page (pip install from a
    checkout, as deploy/README.md does, is not an editable install)."""
    tree = tmp_path / "tree"
    shutil.copytree(
        ROOT,
        tree,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "data",
            "test-artifacts",
            "*.egg-info",
            "build",
            "__pycache__",
            ".*_cache",
            ".hypothesis",
            "node_modules",
            "tests",
            "bench",
        ),
    )
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps"]
    process = await asyncio.create_subprocess_exec(
        *command,
        "--quiet",
        "-w",
        str(tmp_path / "dist"),
        str(tree),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    (wheel,) = (tmp_path / "dist").glob("buildxpert_rtc-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    for path in STATIC.rglob("*"):
        if path.is_file():
            name = path.relative_to(ROOT).as_posix()
            assert name in shipped, f"{name} is not in the wheel"


# --- The page in a browser ----------------------------------------------------------

# Records what the page's Content-Security-Policy refused (Playwright's init scripts
# are not subject to it).
WATCH_CSP = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) =>
  window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    binary = chromium_binary()
    playwright_api = pytest.importorskip(
        "playwright.async_api",
        reason="Playwright is not installed: pip install -e '.[test]' (.ci/run does)",
    )
    async with playwright_api.async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=binary, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


class Console:
    """The console in a tab of its own, as an operator uses it."""

    def __init__(self, page: Page, app: App, code_log: CodeLog) -> None:
        self.page = page
        self.app = app
        self.code_log = code_log
        self.messages: list[str] = []
        page.on("console", lambda message: self.messages.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.messages.append(f"page error: {error}"))

    @classmethod
    async def open(
        cls,
        browser: Browser,
        app: App,
        code_log: CodeLog,
        *,
        host: str = "127.0.0.1",
        **options: Any,
    ) -> Console:
        context = await browser.new_context(viewport={"width": 1280, "height": 800}, **options)
        await context.add_init_script(WATCH_CSP)
        console = cls(await context.new_page(), app, code_log)
        await console.page.goto(console_url(app, host))
        return console

    async def login(self, phone: str) -> None:
        """Log in with the code the development sender logged for ``phone``."""
        page = self.page
        await page.fill("#phone", phone)
        await page.click("#phone-form button[type=submit]")
        try:
            await page.wait_for_selector("#code", state="visible", timeout=15_000)
        except Exception as error:
            raise AssertionError(await self.report()) from error
        e164 = "+91" + phone[-10:]
        await until(lambda: e164 in self.code_log.codes)
        await page.fill("#code", self.code_log.last(e164))
        await page.click("#code-form button[type=submit]")

    async def live(self) -> None:
        """Logged in, watching calls."""
        await self.page.wait_for_selector("#connection[data-state=authenticated]")
        await self.page.wait_for_selector("#tabs", state="visible")

    async def go(self, view: str) -> None:
        await self.page.click(f"#tabs a[href='#{view}']")
        await self.page.wait_for_selector(f"#view-{view}", state="visible")

    async def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    async def report(self) -> str:
        """What the page shows and logged, for a failing assertion's message."""
        text = await self.page.inner_text("body")
        return text + "\nconsole:\n" + "\n".join(self.messages)

    async def check_policy(self) -> None:
        """Nothing the page did was refused by its Content-Security-Policy."""
        violations = await self.page.evaluate("window.cspViolations")
        assert violations == [], violations
        assert not [m for m in self.messages if "Content Security Policy" in m], self.messages
        assert not [m for m in self.messages if m.startswith("page error")], self.messages


async def new_admin(clients: Clients, name: str = "Meera Ops") -> str:
    """An admin account made by an operator, not logged in yet: its phone."""
    phone = clients.new_phone()
    assert clients.app.db is not None
    await accounts.create_admin(clients.app.db, e164(phone), name)
    return phone


# Plays an <audio> of the page to its end, four times as fast: what the player knew.
PLAY_TO_END = """
async (selector) => {
  const audio = document.querySelector(selector);
  const failed = () => new Error(`audio error ${audio.error && audio.error.code}: ${audio.src}`);
  if (audio.readyState < 1) {
    await new Promise((ok, fail) => {
      audio.addEventListener("loadedmetadata", ok, { once: true });
      audio.addEventListener("error", () => fail(failed()), { once: true });
    });
  }
  const seekable = audio.seekable.length ? audio.seekable.end(0) : 0;
  audio.playbackRate = 4;
  const ended = new Promise((ok, fail) => {
    audio.addEventListener("ended", ok, { once: true });
    audio.addEventListener("error", () => fail(failed()), { once: true });
  });
  await audio.play();
  await ended;
  return { duration: audio.duration, seekable, ended: audio.ended, position: audio.currentTime };
}
"""


def seconds(text: str) -> int:
    """A duration as the table shows it (m:ss or h:mm:ss) in seconds; -1 for none."""
    if ":" not in text:
        return -1
    total = 0
    for part in text.strip().split(":"):
        total = total * 60 + int(part)
    return total


async def test_an_admin_watches_a_recorded_call_live_and_hears_it(
    make_app: AppFactory, code_log: CodeLog, browser: Browser
) -> None:
    app = await make_app(server=CONSOLE_ORIGIN)
    clients = Clients(app, code_log)
    try:
        console = await Console.open(browser, app, code_log, timezone_id="Asia/Kolkata")
        page = console.page
        await console.shot("login")
        await console.login(await new_admin(clients))
        await console.live()
        # The operator's zone (ICU still names it by its old name).
        assert await page.inner_text("#zone") in ("Times in Asia/Kolkata", "Times in Asia/Calcutta")

        # A recorded call shows as it rings, by the parties' names and sides.
        b = await booked(clients, app)
        started = await start(b.customer, b.booking_id, media="recorded")
        call_id = started["callId"]
        row = f"#calls-body tr[data-call-id='{call_id}']"
        await page.wait_for_selector(f"{row} .badge-ringing")
        await page.wait_for_selector(f"{row}:has-text('Ravi Kumar (provider)')")
        cells = await page.locator(f"{row} > *").all_inner_texts()
        assert cells[:6] == [
            str(call_id),
            "Asha Rao (customer)",
            "Ravi Kumar (provider)",
            str(b.booking_id),
            "recorded",
            "ringing",
        ]
        await next_of(b.provider, "call.incoming")
        await step(b.provider, "calls.accept", call_id)
        caller = RecordedParty(b.customer, hz=CALLER_HZ, packets=PACKETS)
        callee = RecordedParty(b.provider, hz=CALLEE_HZ, packets=PACKETS)
        try:
            await caller.connect(call_id)
            await callee.connect(call_id)
            await next_of(b.customer, "call.connected", timeout=10)
            await page.wait_for_selector(f"{row} .badge-connected")
            # Its duration runs, second by second, with no reload and no polling.
            duration = page.locator(f"{row} .duration")
            ticks = [seconds(await duration.inner_text())]
            while ticks[-1] < 2:
                await page.wait_for_function(
                    "([sel, was]) => document.querySelector(sel).textContent !== was",
                    arg=[f"{row} .duration", await duration.inner_text()],
                )
                ticks.append(seconds(await duration.inner_text()))
            assert ticks == sorted(ticks) and ticks[0] >= 0, ticks
            await console.shot("calls-live")
            async with asyncio.timeout(20):
                await asyncio.gather(caller.tone.done.wait(), callee.tone.done.wait())
            host = app.feature(RecordingsFeature).media
            await until(
                lambda: (
                    (got := host.packets(call_id)) is not None
                    and got["caller"] >= caller.sent()
                    and got["callee"] >= callee.sent()
                )
            )
            await step(b.customer, "calls.hangup", call_id)
        finally:
            await caller.close()
            await callee.close()
        # It leaves the table when it ends; its events stay in the feed.
        await page.wait_for_selector(row, state="detached")
        await page.wait_for_selector(
            f"#feed li[data-call-id='{call_id}']:has-text('recording.ready')"
        )
        shown = await page.eval_on_selector_all(
            f"#feed li[data-call-id='{call_id}']", "items => items.map(li => li.dataset.event)"
        )
        assert shown == ["recording.ready", "ended", "connected", "accepted", "ringing"]

        # Its recording plays in the page: each leg and the mixed file, to the end.
        admin, _ = await login_admin(clients)
        (recording,) = (await admin.call("admin.recordings.list", {"callId": call_id}))[
            "recordings"
        ]
        await mixed_of(admin, recording["recordingId"])
        await page.fill("#call-id", str(call_id))
        await page.press("#call-id", "Enter")
        dialog = page.locator("#detail")
        await dialog.locator(".recording").wait_for()
        trail = await dialog.locator("table.trail tbody th").all_inner_texts()
        assert trail == ["ringing", "accepted", "connected", "ended", "recording.ready"]
        lost = await dialog.locator("td[data-lost]").all_inner_texts()
        assert lost == ["0", "0"]
        for leg in ("mixed", "caller", "callee"):
            player = f"#detail .player[data-leg='{leg}']"
            await page.click(f"{player} button")
            await page.wait_for_selector(f"{player} audio")
            played = await page.evaluate(PLAY_TO_END, f"{player} audio")
            assert played["ended"] is True, played
            assert abs(played["duration"] * 1000 - CALL_MS) <= CALL_MS / 10, (leg, played)
            # Seekable over its whole length: the download answered Range requests.
            assert played["seekable"] == pytest.approx(played["duration"], abs=0.1), played
        await console.shot("call-trail")
        await page.keyboard.press("Escape")
        await dialog.wait_for(state="hidden")
        # The recordings: state, duration and lost packets of each leg.
        await console.go("recordings")
        listed_row = f"#recordings-body tr[data-recording-id='{recording['recordingId']}']"
        await page.wait_for_selector(f"{listed_row} .badge-ready")
        cells = await page.locator(f"{listed_row} td").all_inner_texts()
        assert cells[1:6] == [
            str(call_id),
            str(b.booking_id),
            "ready",
            "0:04",
            "caller 0, callee 0",
        ]
        await console.shot("recordings")
        await console.check_policy()
    finally:
        await clients.close()


async def test_an_admin_runs_the_marketplace(
    make_app: AppFactory, code_log: CodeLog, browser: Browser, paytm: PaytmSimulator
) -> None:
    app = await make_app(server=CONSOLE_ORIGIN, payments=gateway(paytm))
    paytm.set_webhook(MID, f"http://127.0.0.1:{app.http.port}{WEBHOOK_PATH}")
    clients = Clients(app, code_log)
    try:
        m = await market(clients, app)
        spam, spam_tokens = await clients.login()
        booking = await m.customer.call("bookings.create", m.booking(later(app)))
        report = await m.customer.call(
            "reports.create",
            {
                "idempotencyKey": key(),
                "bookingId": booking["id"],
                "reason": "Late",
                "description": "Came two hours late and left early.",
            },
        )
        order = await m.provider.call(
            "payments.initiate",
            {"idempotencyKey": key(), "product": "listing", "providerServiceId": m.listing},
        )
        await paytm.complete(order["orderId"], "success")
        await paid(m.provider, order["orderId"])
        console = await Console.open(browser, app, code_log)
        page = console.page
        await console.login(await new_admin(clients))
        await console.live()

        # Stats at a glance, and a chart of the last 30 days: today's booking in it.
        await console.go("overview")
        await page.wait_for_selector("#chart svg")
        assert await page.locator("#chart svg g.panel").count() == 3
        bars = page.locator("#chart svg g.bookings rect")
        assert await bars.count() == 30
        assert (await bars.last.locator("title").text_content() or "").endswith(": 1")
        revenue = page.locator("#chart svg g.revenue rect").last.locator("title")
        assert (await revenue.text_content() or "").endswith(": ₹99.00")
        await console.shot("overview")

        # Unverify the customer: the dialog says what happens; Escape changes nothing.
        await console.go("users")
        await page.fill("#users-search", "Asha")
        await page.press("#users-search", "Enter")
        row = f"#users-body tr[data-user-id='{m.customer_id}']"
        await page.wait_for_selector(f"{row} .badge-verified")
        await page.click(f"{row} button[data-action=unverify]")
        dialog = page.locator("#confirm")
        await dialog.wait_for(state="visible")
        assert "can no longer make or receive calls" in await dialog.inner_text()
        await page.keyboard.press("Escape")
        await dialog.wait_for(state="hidden")
        focused = await page.evaluate("document.activeElement.dataset.action")
        assert focused == "unverify"  # focus is back where it was
        assert (await m.customer.call("me.get"))["isVerified"] is True
        await page.click(f"{row} button[data-action=unverify]")
        await page.click("#confirm button[type=submit]")
        await page.wait_for_selector(f"{row} .badge-unverified")
        assert (await m.customer.call("me.get"))["isVerified"] is False
        await console.shot("users")
        # And verify again: it takes effect for the customer too.
        await page.click(f"{row} button[data-action=verify]")
        await page.click("#confirm button[type=submit]")
        await page.wait_for_selector(f"{row} .badge-verified")
        assert (await m.customer.call("me.get"))["isVerified"] is True
        # Removing asks first, saying it erases the account and blocks the phone.
        await page.click(f"{row} button[data-action=remove]")
        text = await dialog.inner_text()
        assert "blocked from logging in or signing up again" in text and "cannot be undone" in text
        await console.shot("confirm-remove")
        await page.click("#confirm button.secondary")
        await dialog.wait_for(state="hidden")
        assert (await m.customer.call("me.get"))["isVerified"] is True
        # Another account is removed for good: its socket closes, the list has it no more.
        spam_row = f"#users-body tr[data-user-id='{spam_tokens['user']['id']}']"
        await page.fill("#users-search", spam_tokens["user"]["phone"][-10:])
        await page.press("#users-search", "Enter")
        await page.click(f"{spam_row} button[data-action=remove]")
        await page.click("#confirm button[type=submit]")
        await page.wait_for_selector("#status:has-text('was removed')", state="attached")
        await page.wait_for_selector(spam_row, state="detached")
        await until(lambda: spam.close_code == 4003)

        # The provider with its listing and the listing's status.
        await console.go("providers")
        await page.click("#providers-form button[type=submit]")
        provider_row = f"#providers-body tr[data-user-id='{m.provider_id}']"
        await page.wait_for_selector(f"{provider_row} .badge-active")
        assert "plumber" in await page.inner_text(provider_row)
        await console.shot("providers")

        # The reports queue: open reports; mark this one resolved, the reporter is told.
        await console.go("reports")
        report_row = f"#reports-body tr[data-report-id='{report['id']}']"
        await page.wait_for_selector(report_row)
        await console.shot("reports")
        await page.check(f"{report_row} input[type=checkbox]")
        await page.click("#reports-apply")
        await page.click("#confirm button[type=submit]")
        await page.wait_for_selector(report_row, state="detached")  # no longer open
        updated = await next_of(m.customer, "report.updated")
        assert updated["report"]["status"] == "resolved"

        # Payments, one order's whole story, and its refund (with a reason).
        await console.go("payments")
        payment_row = f"#payments-body tr[data-order-id='{order['orderId']}']"
        await page.wait_for_selector(f"{payment_row} .badge-paid")
        await console.shot("payments")
        await page.click(f"{payment_row} button")
        await page.wait_for_selector("#detail h2:has-text('Payment')")
        assert "₹99.00" in await page.inner_text("#detail")
        await console.shot("payment-detail")
        await page.click("#detail button:has-text('Refund')")
        assert "refunded in full" in await dialog.inner_text()
        await page.fill("#refund-reason", "listed by mistake")
        await page.click("#confirm button[type=submit]")
        await page.wait_for_selector(f"{payment_row} .badge-refund-pending")
        refund = await next_of(m.provider, "payment.updated")
        assert refund["payment"]["status"] == "refund_pending"
        await page.keyboard.press("Escape")

        # The admin's own sessions.
        await console.go("sessions")
        await page.wait_for_selector("#sessions-body tr:has-text('this page')")
        await console.shot("sessions")

        # On a tablet the same pages fit the width: no sideways scrolling of the page.
        await page.set_viewport_size({"width": 820, "height": 1180})
        await console.go("users")
        await page.fill("#users-search", "Asha")
        await page.press("#users-search", "Enter")
        await page.wait_for_selector(row)
        wide = await page.evaluate("document.documentElement.scrollWidth")
        assert wide <= 820
        await console.shot("tablet-users")
        await console.check_policy()
        # Logging out ends the session: the page forgets it, a reload asks again.
        await page.click("#logout")
        await page.wait_for_selector("#login-message:has-text('You are logged out.')")
        assert await page.evaluate(f"sessionStorage.getItem('{REFRESH_TOKEN_KEY}')") is None
        await page.reload()
        await page.wait_for_selector("#phone", state="visible")
        assert await page.is_hidden("#tabs")
    finally:
        await clients.close()


async def test_a_non_admin_is_refused_by_the_page_and_by_the_server(
    make_app: AppFactory, code_log: CodeLog, browser: Browser
) -> None:
    app = await make_app(server=CONSOLE_ORIGIN)
    clients = Clients(app, code_log)
    try:
        phone = clients.new_phone()
        customer, tokens = await clients.login(phone)
        # The server refuses admin methods to anyone else, whatever a page shows.
        for method in ("admin.calls.watch", "admin.users.list", "admin.stats"):
            error = await refused(customer, method, {})
            assert (error.code, error.name) == (4003, "forbidden"), method

        console = await Console.open(browser, app, code_log)
        page = console.page
        # The console logs in admins only: no admin code goes to a customer's phone, and
        # the customer's own code does not open it.
        sent = len(code_log.codes[e164(phone)])
        await page.fill("#phone", phone)
        await page.click("#phone-form button[type=submit]")
        await page.wait_for_selector("#code", state="visible")
        assert len(code_log.codes[e164(phone)]) == sent
        await page.fill("#code", code_log.last(e164(phone)))
        await page.click("#code-form button[type=submit]")
        await page.wait_for_selector("#login-error:has-text('this phone has no admin account')")
        assert await page.is_hidden("#tabs")
        await console.shot("refused-code")

        # A customer's session put where the console keeps its own: the page refuses it
        # in words and ends it (the customer's sockets of that session close).
        await page.evaluate(
            "([key, token]) => sessionStorage.setItem(key, token)",
            [REFRESH_TOKEN_KEY, tokens["refreshToken"]],
        )
        await page.reload()
        await page.wait_for_selector(
            "#login-message:has-text('This is a customer account: the console is for admin"
            " accounts only.')"
        )
        assert await page.is_hidden("#tabs")
        assert await page.evaluate(f"sessionStorage.getItem('{REFRESH_TOKEN_KEY}')") is None
        await until(lambda: customer.close_code == 4003)
        await console.shot("refused-session")
        await console.check_policy()
    finally:
        await clients.close()


async def test_a_page_of_an_origin_not_allowed_cannot_open_a_socket(
    make_app: AppFactory, code_log: CodeLog, browser: Browser
) -> None:
    """The page served under another name (localhost, not 127.0.0.1) has another
    origin: the socket port refuses it, and the page says what to do."""
    app = await make_app(server=CONSOLE_ORIGIN)
    console = await Console.open(browser, app, code_log, host="localhost")
    help_text = await console.page.locator("#socket-help").inner_text(timeout=15_000)
    assert f"http://localhost:{app.http.port}" in help_text
    assert "server.allowed_origins" in help_text
    # It keeps trying with backoff (between tries it is "connecting" for a moment).
    await console.page.wait_for_selector(
        "#connection[data-state=reconnecting], #connection[data-state=closed]"
    )
    await console.shot("origin-refused")
    await console.check_policy()


async def test_a_dropped_socket_resumes_without_showing_an_event_twice_or_missing_one(
    make_app: AppFactory, code_log: CodeLog, browser: Browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await make_app(server=CONSOLE_ORIGIN)
    clients = Clients(app, code_log)
    try:
        phone = await new_admin(clients)
        assert app.db is not None
        admin_id = await app.db.fetchval(
            "SELECT id FROM users WHERE phone = $1 AND role = 'admin'", e164(phone)
        )
        console = await Console.open(browser, app, code_log)
        page = console.page
        await console.login(phone)
        await console.live()
        first, second = await booked(clients, app), await booked(clients, app)
        one = (await start(first.customer, first.booking_id))["callId"]
        two_row = "#calls-body tr[data-call-id='{}']"
        await page.wait_for_selector(f"{two_row.format(one)} .badge-ringing")

        # The network drops the page's socket (no closing handshake: 1006) and keeps it
        # out for a while: the socket port refuses the page meanwhile, so its client
        # retries with backoff.
        monkeypatch.setattr(app.sockets.admission, "origin_allowed", lambda origin: origin is None)
        for connection in app.hub.sockets_of(admin_id):
            cast(WebSocketSink, connection.sink).ws.transport.abort()
        await page.wait_for_selector("#connection[data-state=reconnecting]")
        # Meanwhile call one is answered and hung up, and call two rings.
        await next_of(first.provider, "call.incoming")
        await step(first.provider, "calls.accept", one)
        await step(first.customer, "calls.hangup", one)
        two = (await start(second.customer, second.booking_id))["callId"]
        await console.shot("dropped")
        monkeypatch.undo()

        # Back: the table is right, and every event of both calls is shown once.
        await page.wait_for_selector("#connection[data-state=authenticated]", timeout=40_000)
        await page.wait_for_selector(f"{two_row.format(two)} .badge-ringing")
        await page.wait_for_selector(two_row.format(one), state="detached")
        admin, _ = await login_admin(clients)

        async def trail(call_id: int) -> list[int]:
            detail = await admin.call("admin.calls.get", {"callId": call_id})
            return [e["id"] for e in detail["events"]]

        async def shown() -> list[int]:
            ids: list[int] = await page.eval_on_selector_all(
                "#feed li", "items => items.map(li => Number(li.dataset.eventId))"
            )
            return ids

        assert sorted(await shown()) == sorted(await trail(one) + await trail(two))
        # And live as before: call two's end shows at once, once.
        await step(second.customer, "calls.cancel", two)
        await page.wait_for_selector(two_row.format(two), state="detached")
        await page.wait_for_selector(f"#feed li[data-call-id='{two}'][data-event=ended]")
        assert sorted(await shown()) == sorted(await trail(one) + await trail(two))
        await console.shot("resumed")
        await console.check_policy()
    finally:
        await clients.close()
