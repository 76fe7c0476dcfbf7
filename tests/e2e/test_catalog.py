"""The services catalog: public list, etag, admin changes, cache invalidation."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from api.catalog.feature import CatalogFeature
from rtc_server.app import App
from rtc_server.client import RpcCallError, RtcClient

from .admins import login_admin
from .conftest import AppFactory, Clients, CodeLog

_keys = itertools.count(1)


def new_service(**fields: Any) -> dict[str, Any]:
    n = next(_keys)
    return {
        "idempotencyKey": f"svc-key-{n:06d}",
        "slug": f"solar-panels-{n}",
        "name": "Solar panels",
        "category": "repairs",
        "isPaid": True,
        "pricePaise": 14900,
        "subServices": [{"slug": "panel-cleaning", "name": "Panel cleaning"}],
        **fields,
    }


async def refused(client: RtcClient, method: str, params: dict[str, Any]) -> RpcCallError:
    with pytest.raises(RpcCallError) as error:
        await client.call(method, params)
    return error.value


async def test_anonymous_socket_reads_the_seeded_catalog(clients: Clients) -> None:
    client = await clients.anonymous()
    answer = await client.call("services.list")
    services = {s["slug"]: s for s in answer["services"]}
    assert len(services) == 15 and answer["nextAfter"] is None and answer["notModified"] is False
    labour = services["labors"]
    assert labour["isPaid"] is False and labour["pricePaise"] == 0
    assert labour["billingCycle"] == "lifetime"
    assert services["plumber"]["pricePaise"] == 9900 and services["plumber"]["currency"] == "INR"
    assert [s["slug"] for s in labour["subServices"]] == ["per-hour-charges"]
    # The original left these two without sub-services: registering for them failed.
    assert services["electrician"]["subServices"] and services["carpenter"]["subServices"]
    repairs = await client.call("services.list", {"category": "repairs"})
    assert {s["slug"] for s in repairs["services"]} == {"plumber", "electrician"}


async def test_pages_and_etag_not_modified(clients: Clients, app: App) -> None:
    client = await clients.anonymous()
    first = await client.call("services.list", {"limit": 10})
    assert len(first["services"]) == 10 and first["nextAfter"] is not None
    rest = await client.call("services.list", {"limit": 10, "after": first["nextAfter"]})
    assert len(rest["services"]) == 5 and rest["nextAfter"] is None
    loads = app.feature(CatalogFeature).cache.loads
    again = await client.call("services.list", {"limit": 10, "etag": first["etag"]})
    assert again == {"notModified": True}
    assert app.feature(CatalogFeature).cache.loads == loads  # served from memory
    # An etag names one answer: another query with it is answered in full.
    other = await client.call("services.list", {"limit": 10, "after": 1, "etag": first["etag"]})
    assert other["services"] and other["etag"] != first["etag"]
    error = await refused(client, "services.list", {"limit": 101})
    assert error.code == -32602 and error.data["fields"][0]["field"] == "limit"


async def test_admin_change_invalidates_the_cache_and_the_etag(clients: Clients, app: App) -> None:
    reader = await clients.anonymous()
    admin, _ = await login_admin(clients)
    before = await reader.call("services.list", {"category": "repairs"})
    created = await admin.call("admin.services.create", new_service())
    assert created["isActive"] and created["subServices"][0]["slug"] == "panel-cleaning"
    after = await reader.call("services.list", {"category": "repairs", "etag": before["etag"]})
    assert after.get("notModified") is not True and after["etag"] != before["etag"]
    assert created["slug"] in {s["slug"] for s in after["services"]}

    updated = await admin.call(
        "admin.services.update",
        {"id": created["id"], "name": "Solar panel care", "subServices": []},
    )
    assert updated["name"] == "Solar panel care" and updated["subServices"] == []
    listed = await reader.call("services.list", {"category": "repairs"})
    assert {"Solar panel care"} <= {s["name"] for s in listed["services"]}

    hidden = await admin.call("admin.services.deactivate", {"id": created["id"]})
    assert hidden["isActive"] is False
    everything = await admin.call("admin.services.list", {"limit": 100})
    assert hidden in everything["services"] and len(everything["services"]) == 16
    first = await admin.call("admin.services.list", {"limit": 15})
    assert first["nextAfter"] is not None and hidden not in first["services"]
    listed = await reader.call("services.list", {"category": "repairs", "etag": listed["etag"]})
    assert created["slug"] not in {s["slug"] for s in listed["services"]}


async def test_catalog_changed_signal_drops_the_copy(app: App, clients: Clients) -> None:
    client = await clients.anonymous()
    await client.call("services.list")
    loads = app.feature(CatalogFeature).cache.loads
    await client.call("services.list")
    assert app.feature(CatalogFeature).cache.loads == loads
    # What another instance's admin change sends to this one.
    await app.signals.publish("catalog.changed", {"version": 99})
    await client.call("services.list")
    assert app.feature(CatalogFeature).cache.loads == loads + 1


async def test_second_instance_sees_the_change_by_version_not_by_signal(
    make_app: AppFactory, clients: Clients, code_log: CodeLog
) -> None:
    # Two Apps on one database without Redis each have their own InProcessBus: a
    # signal published on one never reaches the other (with Redis it does:
    # test_scaleout.py). So the second instance's copy is only refreshed by its
    # expiry; within it, it is stale. This test shows that limit of running several
    # instances without Redis; invalidation is tested on one instance above.
    other = await make_app()
    other_clients = Clients(other, code_log)
    try:
        reader = await other_clients.anonymous()
        before = await reader.call("services.list")
        admin, _ = await login_admin(clients)
        await admin.call("admin.services.create", new_service())
        stale = await reader.call("services.list", {"etag": before["etag"]})
        assert stale == {"notModified": True}
        other.feature(CatalogFeature).cache.invalidate()  # what the Redis bus would deliver
        fresh = await reader.call("services.list", {"etag": before["etag"]})
        assert len(fresh["services"]) == 16
    finally:
        await other_clients.close()


async def test_admin_create_rules(clients: Clients) -> None:
    admin, _ = await login_admin(clients)
    params = new_service()
    created = await admin.call("admin.services.create", params)
    assert await admin.call("admin.services.create", params) == created  # a retry
    error = await refused(admin, "admin.services.create", new_service(slug=created["slug"]))
    assert error.name == "conflict" and error.data["field"] == "slug"
    bad: list[tuple[dict[str, Any], str]] = [
        ({"slug": "Bad Slug"}, "slug"),
        ({"name": "x" * 101}, "name"),
        ({"pricePaise": -1}, "pricePaise"),
        ({"billingCycle": "weekly"}, "billingCycle"),
        ({"subServices": [{"slug": "a-b", "name": "x" * 101}]}, "subServices.0.name"),
    ]
    for fields, field in bad:
        error = await refused(admin, "admin.services.create", new_service(**fields))
        assert error.code == -32602 and error.data["fields"][0]["field"] == field
    error = await refused(admin, "admin.services.create", new_service(isPaid=False))
    assert error.code == -32602 and error.data["fields"][0]["field"] == "isPaid"
    duplicate = [{"slug": "a-b", "name": "One"}, {"slug": "a-b", "name": "Two"}]
    error = await refused(admin, "admin.services.create", new_service(subServices=duplicate))
    assert error.code == -32602 and error.data["fields"][0]["field"] == "subServices"
    error = await refused(admin, "admin.services.update", {"id": created["id"], "pricePaise": 0})
    assert error.code == -32602 and error.data["fields"][1]["field"] == "pricePaise"
    error = await refused(admin, "admin.services.update", {"id": created["id"], "name": None})
    assert error.code == -32602 and error.data["fields"][0]["field"] == "name"
    error = await refused(admin, "admin.services.update", {"id": 10**9, "name": "Nothing"})
    assert error.name == "not_found"
    listed = await admin.call("services.list", {"category": "repairs"})
    mine = next(s for s in listed["services"] if s["id"] == created["id"])
    assert mine["pricePaise"] == 14900 and mine["name"] == "Solar panels"  # unchanged
