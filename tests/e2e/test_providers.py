"""Providers: registrations and their rules, ownership, the provider profile, and the
public listings (search order and pages, details, featured) that never show a phone."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest

from kernel.clock import FakeClock
from rtc_server.app import App
from rtc_server.client import RpcCallError, RtcClient

from .admins import login_admin
from .conftest import Clients

_keys = itertools.count(1)


async def service_id(app: App, slug: str) -> int:
    assert app.db is not None
    found: int = await app.db.fetchval("SELECT id FROM services WHERE slug = $1", slug)
    return found


async def sub_service_ids(app: App, slug: str) -> list[int]:
    assert app.db is not None
    rows = await app.db.fetch(
        "SELECT ss.id FROM sub_services ss JOIN services s ON s.id = ss.service_id"
        " WHERE s.slug = $1 ORDER BY ss.position",
        slug,
    )
    return [r["id"] for r in rows]


async def registration(app: App, slug: str, **fields: Any) -> dict[str, Any]:
    subs = await sub_service_ids(app, slug)
    return {
        "idempotencyKey": f"prov-key-{next(_keys):06d}",
        "serviceId": await service_id(app, slug),
        "subServices": [{"subServiceId": subs[0], "pricePaise": 50000}],
        "yearsOfExperience": 5,
        "description": "Neat and on time",
        "state": "Kerala",
        "city": "Kochi",
        "fullAddress": "House 12, MG Road, Kochi",
        **fields,
    }


async def refused(client: RtcClient, method: str, params: dict[str, Any]) -> RpcCallError:
    with pytest.raises(RpcCallError) as error:
        await client.call(method, params)
    return error.value


async def provider(clients: Clients, name: str = "Ravi Kumar") -> tuple[RtcClient, str]:
    phone = clients.new_phone()
    client = await clients.anonymous()
    await client.call("auth.requestOtp", {"phone": phone, "role": "provider"})
    await client.login(phone, "provider", clients.code_log.last("+91" + phone[-10:]), fullName=name)
    return client, phone


async def test_paid_service_starts_pending_and_free_labour_is_active_for_a_year(
    clients: Clients, app: App, clock: FakeClock
) -> None:
    ravi, _ = await provider(clients)
    plumbing = await ravi.call("providers.registerService", await registration(app, "plumber"))
    assert plumbing["status"] == "pending" and plumbing["activeUntil"] is None
    assert plumbing["serviceSlug"] == "plumber" and plumbing["providerServiceId"] >= 1
    assert [s["pricePaise"] for s in plumbing["subServices"]] == [50000]
    labour = await ravi.call("providers.registerService", await registration(app, "labors"))
    assert labour["status"] == "active"
    until = datetime.fromisoformat(labour["activeUntil"])
    assert abs(until - (clock.now() + timedelta(days=365))) < timedelta(seconds=1)
    mine = await ravi.call("providers.myServices")
    assert [s["providerServiceId"] for s in mine["services"]] == [
        plumbing["providerServiceId"],
        labour["providerServiceId"],
    ]
    # A pending one is not listed; the active one is.
    anonymous = await clients.anonymous()
    plumbers = await anonymous.call(
        "providers.search", {"serviceId": await service_id(app, "plumber")}
    )
    assert plumbers["providers"] == []
    await refused(anonymous, "providers.get", {"providerServiceId": plumbing["providerServiceId"]})
    labourers = await anonymous.call(
        "providers.search", {"serviceId": await service_id(app, "labors")}
    )
    assert [p["providerServiceId"] for p in labourers["providers"]] == [labour["providerServiceId"]]
    # Past its year the free listing is no longer shown.
    clock.advance(366 * 86400)
    later = await anonymous.call("providers.search", {"serviceId": await service_id(app, "labors")})
    assert later["providers"] == []


async def test_one_registration_per_service(clients: Clients, app: App) -> None:
    ravi, _ = await provider(clients)
    first = await ravi.call("providers.registerService", await registration(app, "plumber"))
    error = await refused(ravi, "providers.registerService", await registration(app, "plumber"))
    assert error.name == "conflict" and error.data["reason"] == "already_registered"
    # The same key again is a retry: the first answer, no conflict.
    params = await registration(app, "electrician")
    assert await ravi.call("providers.registerService", params) == await ravi.call(
        "providers.registerService", params
    )
    # Removed, it may be registered again.
    await ravi.call("providers.removeService", {"providerServiceId": first["providerServiceId"]})
    again = await ravi.call("providers.registerService", await registration(app, "plumber"))
    assert again["providerServiceId"] == first["providerServiceId"]
    mine = await ravi.call("providers.myServices")
    assert len(mine["services"]) == 2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"subServices": []}, "subServices"),
        ({"subServices": [{"subServiceId": 1, "pricePaise": 0}]}, "subServices.0.pricePaise"),
        ({"subServices": [{"subServiceId": 1, "pricePaise": -5}]}, "subServices.0.pricePaise"),
        ({"city": "x" * 101}, "city"),
        ({"description": "d" * 1001}, "description"),
        ({"fullAddress": "short"}, "fullAddress"),
        ({"yearsOfExperience": 81}, "yearsOfExperience"),
        ({"phone": "9876543210"}, "phone"),
    ],
)
async def test_bad_registration_names_the_field_and_changes_nothing(
    clients: Clients, app: App, change: dict[str, Any], field: str
) -> None:
    ravi, _ = await provider(clients)
    error = await refused(
        ravi, "providers.registerService", {**await registration(app, "plumber"), **change}
    )
    assert error.code == -32602 and error.data["fields"][0]["field"] == field
    assert (await ravi.call("providers.myServices"))["services"] == []


async def test_only_the_services_own_sub_services_at_prices_above_zero(
    clients: Clients, app: App
) -> None:
    ravi, _ = await provider(clients)
    electrical = await sub_service_ids(app, "electrician")
    params = await registration(
        app,
        "plumber",
        subServices=[
            {"subServiceId": (await sub_service_ids(app, "plumber"))[0], "pricePaise": 100},
            {"subServiceId": electrical[0], "pricePaise": 100},
        ],
    )
    error = await refused(ravi, "providers.registerService", params)
    assert error.code == -32602
    assert error.data["fields"][0]["field"] == "subServices.1.subServiceId"
    twice = await registration(
        app,
        "electrician",
        subServices=[{"subServiceId": electrical[0], "pricePaise": 100}] * 2,
    )
    error = await refused(ravi, "providers.registerService", twice)
    assert error.code == -32602 and error.data["fields"][0]["field"] == "subServices"
    missing = await refused(
        ravi,
        "providers.registerService",
        {**await registration(app, "plumber"), "serviceId": 999999},
    )
    assert missing.name == "not_found"
    assert (await ravi.call("providers.myServices"))["services"] == []


async def test_update_and_remove_belong_to_the_owner(clients: Clients, app: App) -> None:
    ravi, _ = await provider(clients)
    other, _ = await provider(clients, "Someone Else")
    mine = await ravi.call("providers.registerService", await registration(app, "labors"))
    ref = {"providerServiceId": mine["providerServiceId"]}
    for method, params in (
        ("providers.updateService", {**ref, "city": "Thrissur"}),
        ("providers.removeService", ref),
    ):
        error = await refused(other, method, params)
        assert error.name == "not_found"
    sub = (await sub_service_ids(app, "labors"))[0]
    updated = await ravi.call(
        "providers.updateService",
        {**ref, "city": "Thrissur", "subServices": [{"subServiceId": sub, "pricePaise": 70000}]},
    )
    assert updated["city"] == "Thrissur" and updated["subServices"][0]["pricePaise"] == 70000
    foreign = (await sub_service_ids(app, "plumber"))[0]
    error = await refused(
        ravi,
        "providers.updateService",
        {**ref, "subServices": [{"subServiceId": foreign, "pricePaise": 1}]},
    )
    assert error.data["fields"][0]["field"] == "subServices.0.subServiceId"
    error = await refused(ravi, "providers.updateService", {**ref, "state": None})
    assert error.code == -32602 and error.data["fields"][0]["field"] == "state"
    assert (await ravi.call("providers.myServices"))["services"] == [updated]
    await ravi.call("providers.removeService", ref)
    assert (await ravi.call("providers.myServices"))["services"] == []
    error = await refused(ravi, "providers.removeService", ref)
    assert error.name == "not_found"
    anonymous = await clients.anonymous()
    assert (await refused(anonymous, "providers.get", ref)).name == "not_found"


async def test_provider_profile(clients: Clients) -> None:
    ravi, _ = await provider(clients)
    no_files = {"workingProofs": [], "certificate": None}  # uploads: tests/e2e/test_uploads.py
    assert await ravi.call("providers.profile.get") == {
        "yearsOfExperience": 0,
        "description": None,
        "isEngineeringProvider": False,
        **no_files,
    }
    saved = await ravi.call(
        "providers.profile.update", {"yearsOfExperience": 12, "isEngineeringProvider": True}
    )
    assert saved == {
        "yearsOfExperience": 12,
        "description": None,
        "isEngineeringProvider": True,
        **no_files,
    }
    saved = await ravi.call("providers.profile.update", {"description": "Civil engineer"})
    assert saved["yearsOfExperience"] == 12 and saved["description"] == "Civil engineer"
    assert await ravi.call("providers.profile.get") == saved
    error = await refused(ravi, "providers.profile.update", {"yearsOfExperience": None})
    assert error.code == -32602 and error.data["fields"][0]["field"] == "yearsOfExperience"


async def test_search_orders_by_city_state_experience_and_pages_with_a_cursor(
    clients: Clients, app: App
) -> None:
    # (city, state, years) of each labourer, in the order the search must give.
    places = [
        ("Kochi", "Kerala", 20),
        ("Kochi", "Kerala", 3),
        ("Kochi", "Kerala", 3),
        ("Thrissur", "Kerala", 30),
        ("Kollam", "Kerala", 1),
        ("Chennai", "Tamil Nadu", 40),
        ("Mumbai", "Maharashtra", 10),
        ("Pune", "Maharashtra", 10),
    ]
    expected = []
    sub = (await sub_service_ids(app, "labors"))[0]
    for i, (city, state, years) in enumerate(places):
        client, _ = await provider(clients, f"Labourer {i}")
        registered = await client.call(
            "providers.registerService",
            await registration(
                app,
                "labors",
                city=city,
                state=state,
                yearsOfExperience=years,
                subServices=[{"subServiceId": sub, "pricePaise": 1000 * (i + 1)}],
            ),
        )
        expected.append(registered["providerServiceId"])
    # Equal keys (rank, years) fall back to id: registration order.
    anonymous = await clients.anonymous()
    query = {"serviceId": await service_id(app, "labors"), "city": "kochi", "state": "KERALA"}
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        page = await anonymous.call(
            "providers.search", {**query, "limit": 3, **({"cursor": cursor} if cursor else {})}
        )
        pages += 1
        seen += [p["providerServiceId"] for p in page["providers"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert pages == 3 and seen == expected  # no duplicates, no gaps
    whole = await anonymous.call("providers.search", {**query, "limit": 50})
    first = whole["providers"][0]
    assert first["minPricePaise"] == first["maxPricePaise"] == 1000
    assert first["displayName"] == "Labourer 0" and first["city"] == "Kochi"
    # A Mumbai customer sees Maharashtra first, then by experience.
    mumbai = await anonymous.call(
        "providers.search", {**query, "city": "Mumbai", "state": "Maharashtra"}
    )
    assert [p["city"] for p in mumbai["providers"]][:3] == ["Mumbai", "Pune", "Chennai"]


async def test_tampered_or_foreign_cursor_is_refused(clients: Clients, app: App) -> None:
    for i in range(3):
        client, _ = await provider(clients, f"Labourer {i}")
        await client.call("providers.registerService", await registration(app, "labors"))
    anonymous = await clients.anonymous()
    query = {"serviceId": await service_id(app, "labors"), "city": "Kochi", "limit": 1}
    cursor = (await anonymous.call("providers.search", query))["nextCursor"]
    assert cursor is not None
    for bad in ("garbage!!", cursor[:-2] + "zz", "e30", "x" * 201):
        error = await refused(anonymous, "providers.search", {**query, "cursor": bad})
        assert error.code == -32602 and error.data["fields"][0]["field"] == "cursor"
    # A cursor of one query is not a cursor of another.
    error = await refused(
        anonymous, "providers.search", {**query, "city": "Pune", "cursor": cursor}
    )
    assert error.code == -32602 and error.data["fields"][0]["field"] == "cursor"
    error = await refused(anonymous, "providers.search", {**query, "limit": 51})
    assert error.code == -32602 and error.data["fields"][0]["field"] == "limit"


async def test_public_listings_never_show_a_phone_or_a_user_id(clients: Clients, app: App) -> None:
    ravi, phone = await provider(clients)
    await ravi.call("providers.profile.update", {"yearsOfExperience": 9, "description": "Fast"})
    subs = await sub_service_ids(app, "labors")
    registered = await ravi.call(
        "providers.registerService",
        await registration(
            app,
            "labors",
            yearsOfExperience=None,
            description=None,
            subServices=[{"subServiceId": subs[0], "pricePaise": 45000}],
        ),
    )
    ref = {"providerServiceId": registered["providerServiceId"]}
    anonymous = await clients.anonymous()
    found = await anonymous.call("providers.search", {"serviceId": await service_id(app, "labors")})
    details = await anonymous.call("providers.get", ref)
    featured = await anonymous.call("providers.featured")
    assert details["yearsOfExperience"] == 9 and details["description"] == "Fast"
    assert details["subServices"] == [
        {
            "subServiceId": subs[0],
            "slug": "per-hour-charges",
            "name": "Per hour charges",
            "pricePaise": 45000,
        }
    ]
    assert details["minPricePaise"] == details["maxPricePaise"] == 45000
    assert [p["providerServiceId"] for p in featured["providers"]] == [ref["providerServiceId"]]
    for answer in (found, details, featured):
        text = orjson.dumps(answer).decode()
        assert phone[-10:] not in text and "+91" not in text and "phone" not in text.lower()
        assert "House 12" not in text  # the street address stays private
        assert "userId" not in text and "providerId" not in text
    error = await refused(anonymous, "providers.featured", {"limit": 21})
    assert error.code == -32602 and error.data["fields"][0]["field"] == "limit"


async def test_sub_service_ids_come_from_the_catalog_and_survive_an_admin_edit(
    clients: Clients, app: App
) -> None:
    anonymous = await clients.anonymous()
    catalog = {s["slug"]: s for s in (await anonymous.call("services.list"))["services"]}
    labour = catalog["labors"]
    assert [s["id"] for s in labour["subServices"]] == await sub_service_ids(app, "labors")
    ravi, _ = await provider(clients)
    sub = labour["subServices"][0]["id"]
    registered = await ravi.call(
        "providers.registerService",
        await registration(app, "labors", subServices=[{"subServiceId": sub, "pricePaise": 900}]),
    )
    ref = {"providerServiceId": registered["providerServiceId"]}
    admin, _ = await login_admin(clients)
    edited = await admin.call(
        "admin.services.update",
        {
            "id": labour["id"],
            "subServices": [
                {"slug": "half-day", "name": "Half day"},
                {"slug": "per-hour-charges", "name": "Per hour"},
            ],
        },
    )
    assert [s["id"] for s in edited["subServices"]][1] == sub  # a kept slug keeps its id
    details = await anonymous.call("providers.get", ref)
    assert [(s["subServiceId"], s["name"], s["pricePaise"]) for s in details["subServices"]] == [
        (sub, "Per hour", 900)
    ]
