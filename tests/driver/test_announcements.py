"""admin.announce: one event to every user of an audience, in pages of jobs (the
publisher's chunked fan-out), each user once."""

from __future__ import annotations

import pytest

from api import announcements
from rtc_server.app import App
from rtc_server.client import RpcCallError

from .conftest import MemoryClients


async def test_an_announcement_reaches_its_audience_once_across_pages(
    core: App, clients: MemoryClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(announcements, "PAGE", 2)  # three pages for five customers
    customers = [await clients.login(role="customer") for _ in range(5)]
    providers = [await clients.login(role="provider") for _ in range(2)]
    admin, _ = await clients.admin()
    answer = await admin.call(
        "admin.announce",
        {
            "idempotencyKey": "announce-0001",
            "audience": "customers",
            "title": "Diwali hours",
            "body": "Bookings for 12 Nov are confirmed by phone.",
        },
    )
    again = await admin.call(
        "admin.announce",
        {
            "idempotencyKey": "announce-0001",
            "audience": "customers",
            "title": "Diwali hours",
            "body": "Bookings for 12 Nov are confirmed by phone.",
        },
    )
    assert again == answer  # a retried request does not announce twice
    assert await clients.worker().run_due() == 3  # pages of 2, 2 and 1
    for client, _ in customers:
        event = await client.next_event(method="announcement.created")
        assert event.seq is not None
        assert event.data["announcementId"] == answer["announcementId"]
        assert event.data["title"] == "Diwali hours"
        await client.call("system.ping")  # a duplicate would have arrived by now
        assert [e.method for e in client.received].count("announcement.created") == 1
    for client, _ in providers:
        await client.call("system.ping")
        assert "announcement.created" not in [e.method for e in client.received]


async def test_only_admins_announce_and_the_text_is_checked(clients: MemoryClients) -> None:
    customer, _ = await clients.login()
    params = {"idempotencyKey": "announce-0002", "audience": "everyone", "title": "Hi", "body": "x"}
    with pytest.raises(RpcCallError) as refused:
        await customer.call("admin.announce", params)
    assert refused.value.name == "forbidden"
    admin, _ = await clients.admin()
    with pytest.raises(RpcCallError) as invalid:
        await admin.call("admin.announce", {**params, "title": "bell\x07"})
    assert invalid.value.code == -32602
    assert await clients.worker().run_due() == 0  # nothing was enqueued
