"""The admin console: accounts and providers listed in pages, the verified flag,
removing an account (sockets closed, phone blocked, listings gone) and the stats cache."""

from __future__ import annotations

from typing import Any

import pytest

from kernel.clock import FakeClock
from kernel.errors import CloseCode
from rtc_server.app import App
from rtc_server.client import RpcCallError, RtcClient

from .admins import login_admin
from .conftest import Clients, e164
from .test_providers import provider, registration, service_id


async def refused(client: RtcClient, method: str, params: dict[str, Any]) -> RpcCallError:
    with pytest.raises(RpcCallError) as error:
        await client.call(method, params)
    return error.value


async def test_users_list_filters_and_pages(clients: Clients) -> None:
    admin, admin_tokens = await login_admin(clients)
    customers = [(await clients.login())[1]["user"] for _ in range(3)]
    ravi, _ = await provider(clients, "Ravi Kumar")
    # Pages of two, by id, until nextCursor is null.
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"role": "customer", "limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = await admin.call("admin.users.list", params)
        seen += page["users"]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert [u["id"] for u in seen] == [c["id"] for c in customers]
    assert all(u["role"] == "customer" and u["isActive"] for u in seen)
    everyone = await admin.call("admin.users.list", {})
    assert {u["role"] for u in everyone["users"]} == {"customer", "provider", "admin"}
    assert everyone["nextCursor"] is None
    found = await admin.call("admin.users.list", {"search": "ravi"})
    assert [u["fullName"] for u in found["users"]] == ["Ravi Kumar"]
    # LIKE's wildcards are matched literally.
    assert (await admin.call("admin.users.list", {"search": "%"}))["users"] == []
    # Logging in verifies the phone: unverify one, then filter on the flag.
    target = customers[0]["id"]
    changed = await admin.call("admin.users.verify", {"userId": target, "verified": False})
    assert changed["isVerified"] is False and changed["id"] == target
    unverified = await admin.call("admin.users.list", {"verified": False, "role": "customer"})
    assert [u["id"] for u in unverified["users"]] == [target]
    again = await admin.call("admin.users.verify", {"userId": target, "verified": True})
    assert again["isVerified"] is True
    # The page size has a hard maximum; a cursor is ours or refused.
    assert (await refused(admin, "admin.users.list", {"limit": 101})).name == "invalid_params"
    error = await refused(admin, "admin.users.list", {"cursor": "abc"})
    assert error.name == "invalid_params"
    error = await refused(admin, "admin.users.verify", {"userId": 999_999, "verified": True})
    assert error.name == "not_found"
    assert admin_tokens["user"]["role"] == "admin" and ravi is not None


async def test_providers_list_with_registration_counts(clients: Clients, app: App) -> None:
    admin, _ = await login_admin(clients)
    ravi, _ = await provider(clients, "Ravi Kumar")
    await provider(clients, "Anil Nair")
    await clients.login()  # a customer: not a provider
    await ravi.call("providers.registerService", await registration(app, "plumber"))
    await ravi.call("providers.registerService", await registration(app, "labors"))
    listed = await admin.call("admin.providers.list", {})
    by_name = {p["fullName"]: p for p in listed["providers"]}
    assert set(by_name) == {"Ravi Kumar", "Anil Nair"}
    assert by_name["Ravi Kumar"]["registrations"] == {"pending": 1, "active": 1, "expired": 0}
    assert by_name["Anil Nair"]["registrations"] == {"pending": 0, "active": 0, "expired": 0}
    # Each listing with its real status and the end of what is paid for.
    listings = {x["serviceSlug"]: x for x in by_name["Ravi Kumar"]["listings"]}
    assert listings["plumber"]["status"] == "pending" and listings["plumber"]["activeUntil"] is None
    assert listings["labors"]["status"] == "active" and listings["labors"]["activeUntil"]
    assert by_name["Anil Nair"]["listings"] == []
    assert all("bookings" not in key.lower() for key in by_name["Ravi Kumar"])
    first = await admin.call("admin.providers.list", {"limit": 1})
    rest = await admin.call("admin.providers.list", {"limit": 1, "cursor": first["nextCursor"]})
    assert [p["fullName"] for p in first["providers"] + rest["providers"]] == [
        "Ravi Kumar",
        "Anil Nair",
    ]
    assert rest["nextCursor"] is None
    anil = await admin.call("admin.providers.list", {"search": "anil"})
    assert [p["fullName"] for p in anil["providers"]] == ["Anil Nair"]


async def test_remove_closes_sockets_blocks_the_phone_and_hides_listings(
    clients: Clients, app: App, clock: FakeClock
) -> None:
    admin, admin_tokens = await login_admin(clients)
    ravi, phone = await provider(clients, "Ravi Kumar")
    labour = await ravi.call("providers.registerService", await registration(app, "labors"))
    labors = await service_id(app, "labors")
    anonymous = await clients.anonymous()
    listed = await anonymous.call("providers.search", {"serviceId": labors})
    assert [p["providerServiceId"] for p in listed["providers"]] == [labour["providerServiceId"]]
    me = await ravi.call("me.get")
    # A code asked for before the removal does not log in after it.
    early = await clients.anonymous()
    clock.advance(31)  # past the resend cooldown
    await early.call("auth.requestOtp", {"phone": phone, "role": "provider"})
    early_code = clients.code_log.last(e164(phone))

    removed = await admin.call("admin.users.remove", {"userId": me["id"]})
    assert removed == {"ok": True, "revoked": 1}
    assert await ravi.wait_closed() == CloseCode.SESSION_REVOKED
    # Listings are gone at once.
    assert (await anonymous.call("providers.search", {"serviceId": labors}))["providers"] == []
    error = await refused(
        anonymous, "providers.get", {"providerServiceId": labour["providerServiceId"]}
    )
    assert error.name == "not_found"
    error = await refused(
        early, "auth.verifyOtp", {"phone": phone, "role": "provider", "code": early_code}
    )
    assert error.name == "invalid_code" and error.data["reason"] == "no_code"
    # The phone gets the same answer as an unknown phone, but no code.
    sent_before = len(clients.code_log.codes[e164(phone)])
    fresh = await clients.anonymous()
    clock.advance(31)
    unknown = await fresh.call(
        "auth.requestOtp", {"phone": clients.new_phone(), "role": "customer"}
    )
    answer = await fresh.call("auth.requestOtp", {"phone": phone, "role": "provider"})
    assert answer == unknown
    answer = await fresh.call("auth.requestOtp", {"phone": phone, "role": "customer"})
    assert answer == unknown
    assert len(clients.code_log.codes[e164(phone)]) == sent_before
    # The account is erased (as me.delete erases: tests/e2e/test_account_deletion.py);
    # removing it again finds nothing, and changes nothing.
    assert (await admin.call("admin.users.list", {"search": phone[-10:]}))["users"] == []
    error = await refused(admin, "admin.users.remove", {"userId": me["id"]})
    assert error.name == "not_found"
    assert app.db is not None
    blocked = await app.db.fetch("SELECT kind, value FROM blocked_identifiers")
    assert [(r["kind"], r["value"]) for r in blocked] == [("phone", e164(phone))]
    # An admin cannot remove themselves; an unknown account is not found.
    error = await refused(admin, "admin.users.remove", {"userId": admin_tokens["user"]["id"]})
    assert error.name == "conflict" and error.data["reason"] == "self"
    error = await refused(admin, "admin.users.remove", {"userId": 999_999})
    assert error.name == "not_found"


async def test_remove_blocks_the_email_too(clients: Clients) -> None:
    admin, _ = await login_admin(clients)
    customer, tokens = await clients.login()
    await customer.call("me.update", {"email": "Someone@Example.in"})
    await admin.call("admin.users.remove", {"userId": tokens["user"]["id"]})
    assert await customer.wait_closed() == CloseCode.SESSION_REVOKED
    assert clients.app.db is not None
    rows = await clients.app.db.fetch("SELECT kind, value FROM blocked_identifiers ORDER BY kind")
    assert [(r["kind"], r["value"]) for r in rows] == [
        ("email", "someone@example.in"),
        ("phone", e164(tokens["user"]["phone"])),
    ]
    # Nobody else may take the blocked email, whatever its case.
    other, _ = await clients.login()
    error = await refused(other, "me.update", {"email": "someone@EXAMPLE.in"})
    assert error.name == "conflict" and error.data["reason"] == "email_blocked"
    assert (await other.call("me.update", {"email": "other@example.in"}))["email"]


async def test_stats_counts_and_cache(clients: Clients, app: App, clock: FakeClock) -> None:
    admin, _ = await login_admin(clients)
    ravi, _ = await provider(clients)
    await ravi.call("providers.registerService", await registration(app, "plumber"))
    await clients.login()
    stats = await admin.call("admin.stats")
    assert stats["usersByRole"] == {"admin": 1, "provider": 1, "customer": 1}
    assert stats["verifiedUsers"] == 2  # logging in verifies the phone (not the admin's)
    assert stats["registrationsByStatus"] == {"pending": 1}
    assert app.db is not None
    services: int = await app.db.fetchval("SELECT count(*) FROM services WHERE is_active")
    assert stats["activeServices"] == services > 0
    # Cached: a new customer is counted only once the 30 s are over.
    await clients.login()
    clock.advance(29)
    assert await admin.call("admin.stats") == stats
    clock.advance(2)
    later = await admin.call("admin.stats")
    assert later["usersByRole"]["customer"] == 2 and later["computedAt"] != stats["computedAt"]


async def test_unverify_sticks_across_logins(clients: Clients, clock: FakeClock) -> None:
    admin, _ = await login_admin(clients)
    customer, tokens = await clients.login()
    phone, user_id = tokens["user"]["phone"], tokens["user"]["id"]
    assert (await customer.call("me.get"))["isVerified"] is True
    unverified = await admin.call("admin.users.verify", {"userId": user_id, "verified": False})
    assert unverified["isVerified"] is False
    # Logging in again proves the phone, but does not undo the admin's decision.
    clock.advance(31)  # past the resend cooldown
    again, _ = await clients.login(phone)
    assert (await again.call("me.get"))["isVerified"] is False
    # Until an admin verifies it again; then a login keeps it verified.
    await admin.call("admin.users.verify", {"userId": user_id, "verified": True})
    clock.advance(31)
    third, _ = await clients.login(phone)
    assert (await third.call("me.get"))["isVerified"] is True


async def test_admins_cannot_unmake_admins(clients: Clients) -> None:
    first, _ = await login_admin(clients)
    second, second_tokens = await login_admin(clients)
    other = second_tokens["user"]["id"]
    for method, params in [
        ("admin.users.remove", {"userId": other}),
        ("admin.users.verify", {"userId": other, "verified": False}),
    ]:
        error = await refused(first, method, params)
        assert error.name == "forbidden" and error.data["reason"] == "admin_account", method
    # Nothing changed: the second admin still works.
    users = await second.call("admin.users.list", {"role": "admin"})
    assert {u["id"]: u["isActive"] for u in users["users"]}[other] is True


async def test_audit_keeps_every_admin_action(clients: Clients) -> None:
    first, first_tokens = await login_admin(clients)
    second, second_tokens = await login_admin(clients)
    customer, tokens = await clients.login()
    user_id = tokens["user"]["id"]
    await first.call("admin.users.verify", {"userId": user_id, "verified": False})
    await refused(first, "admin.users.remove", {"userId": 999_999})
    await second.call("admin.stats")
    await customer.call("me.get")  # not an admin: not audited
    await first.call("auth.sessions")  # login's own methods: not audited

    page = await second.call("admin.audit.list", {"limit": 2})
    assert [a["method"] for a in page["actions"]] == ["admin.stats", "admin.users.remove"]
    newest, failed = page["actions"]
    assert newest["adminId"] == second_tokens["user"]["id"] and newest["outcome"] == "ok"
    assert newest["adminName"] == "Ops" and newest["ip"] == "127.0.0.1"
    assert failed["adminId"] == first_tokens["user"]["id"]
    assert failed["outcome"] == "not_found" and failed["params"] == {"userId": 999_999}
    rest = await second.call("admin.audit.list", {"limit": 2, "cursor": page["nextCursor"]})
    assert [(a["method"], a["params"], a["outcome"]) for a in rest["actions"]] == [
        ("admin.users.verify", {"userId": user_id, "verified": False}, "ok"),
    ]
    assert rest["nextCursor"] is None
    # One admin's actions (reading the audit is an action too).
    mine = await first.call("admin.audit.list", {"adminId": first_tokens["user"]["id"]})
    assert [a["method"] for a in mine["actions"]] == ["admin.users.remove", "admin.users.verify"]
    everyone = await first.call("admin.audit.list", {})
    assert [a["method"] for a in everyone["actions"]][:3] == [
        "admin.audit.list",
        "admin.audit.list",
        "admin.audit.list",
    ]


async def test_an_admins_login_is_its_last_login(clients: Clients) -> None:
    admin, tokens = await login_admin(clients)
    page = await admin.call("admin.users.list", {"role": "admin"})
    [me] = [u for u in page["users"] if u["id"] == tokens["user"]["id"]]
    assert me["lastLoginAt"] is not None
