"""The welcome notification: written with a new account at its first login, its first
event; never again for the same account."""

from __future__ import annotations

from kernel.clock import FakeClock
from rtc_server.app import App

from .admins import login_admin
from .conftest import Clients, CodeLog, e164
from .market import refused


async def welcomes(app: App, user_id: int) -> int:
    """Welcome notifications and their events in the user's log."""
    assert app.db is not None
    notes: int = await app.db.fetchval(
        "SELECT count(*) FROM notifications WHERE user_id = $1 AND type = 'welcome'", user_id
    )
    events: int = await app.db.fetchval(
        "SELECT count(*) FROM user_events WHERE user_id = $1 AND event = 'notification.created'"
        " AND payload #>> '{notification,type}' = 'welcome'",
        user_id,
    )
    assert notes == events
    return notes


async def test_a_new_account_is_welcomed_at_its_first_login_only(
    clients: Clients, app: App, code_log: CodeLog, clock: FakeClock
) -> None:
    phone = clients.new_phone()
    client, tokens = await clients.login(phone)
    user_id = tokens["user"]["id"]
    first = await client.next_event()  # replayed after session.authenticate
    assert (first.method, first.seq) == ("notification.created", 1)
    note = first.data["notification"]
    assert (note["type"], note["title"], note["bookingId"], note["read"]) == (
        "welcome",
        "Welcome to BuildXpert! 🎉",
        None,
        False,
    )
    assert note["body"] == (
        "Hi, your account is ready. Find trusted professionals near you and book them in a"
        " few taps."
    )
    listed = await client.call("notifications.list", {})
    assert listed["notifications"] == [note] and listed["unreadCount"] == 1
    # Logging in again (another device, the same phone): the same account, no new welcome.
    clock.advance(60)  # a code a minute
    again, again_tokens = await clients.login(phone)
    assert again_tokens["user"]["id"] == user_id
    assert (await again.call("notifications.list", {}))["notifications"] == [note]
    assert await welcomes(app, user_id) == 1
    # The same phone as a provider is another account: welcomed as a provider, by name.
    clock.advance(60)
    provider = await clients.anonymous()
    await provider.call("auth.requestOtp", {"phone": phone, "role": "provider"})
    ptokens = await provider.login(
        phone, "provider", code_log.last(e164(phone)), fullName="Ravi Kumar"
    )
    assert ptokens["user"]["id"] != user_id
    theirs = (await provider.next_event(method="notification.created")).data["notification"]
    assert theirs["title"] == "Welcome to BuildXpert Provider! 🎉"
    assert theirs["body"] == (
        "Hi Ravi Kumar, your account is ready. Register your services to start getting bookings."
    )
    assert await welcomes(app, ptokens["user"]["id"]) == 1


async def test_no_welcome_without_a_new_account(
    clients: Clients, app: App, code_log: CodeLog
) -> None:
    # A wrong code creates nothing.
    phone = clients.new_phone()
    client = await clients.anonymous()
    await client.call("auth.requestOtp", {"phone": phone, "role": "customer"})
    code = code_log.last(e164(phone))
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    attempt = {"phone": phone, "role": "customer", "code": wrong}
    assert (await refused(client, "auth.verifyOtp", attempt)).name == "invalid_code"
    assert app.db is not None
    assert await app.db.fetchval("SELECT count(*) FROM users WHERE phone = $1", e164(phone)) == 0
    # Admin accounts are made by an operator, not by a first login: no welcome.
    _, tokens = await login_admin(clients)
    admin_id = tokens["user"]["id"]
    assert await welcomes(app, admin_id) == 0
    assert (
        await app.db.fetchval("SELECT count(*) FROM user_events WHERE user_id = $1", admin_id) == 0
    )
