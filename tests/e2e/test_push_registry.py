"""The push token registry over real sockets: push.register / unregister / devices /
settings, several devices per user, tokens moving between users, bad input refused."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from rtc_server.app import App
from rtc_server.client import RpcCallError, RtcClient
from storage import push as push_store

from .conftest import Clients


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def web_subscription(
    endpoint: str = "https://fcm.googleapis.com/fcm/send/abc123",
) -> dict[str, Any]:
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    point = public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return {"endpoint": endpoint, "keys": {"p256dh": b64url(point), "auth": b64url(os.urandom(16))}}


async def refused(client: RtcClient, method: str, params: dict[str, Any]) -> RpcCallError:
    with pytest.raises(RpcCallError) as error:
        await client.call(method, params)
    return error.value


async def tokens_of(app: App, user_id: int) -> dict[str, str]:
    assert app.db is not None
    return {d.device_id: d.token for d in await push_store.devices_of(app.db, user_id)}


async def test_a_user_registers_several_devices_and_re_registering_replaces_the_token(
    app: App, clients: Clients
) -> None:
    client, tokens = await clients.login()
    user = tokens["user"]["id"]
    phone = await client.call(
        "push.register",
        {
            "platform": "android",
            "deviceId": "pixel-1",
            "token": "fcm-token-aaaa",
            "appVersion": "2.1",
        },
    )
    assert phone["provider"] == "fcm" and phone["appVersion"] == "2.1"
    ipad = await client.call(
        "push.register", {"platform": "ios", "deviceId": "ipad-1", "token": "ab" * 32}
    )
    assert ipad["provider"] == "apns"
    web = await client.call(
        "push.register",
        {"platform": "web", "deviceId": "laptop", "subscription": web_subscription()},
    )
    assert web["provider"] == "webpush"
    await client.call(
        "push.register", {"platform": "android", "deviceId": "pixel-1", "token": "fcm-token-bbbb"}
    )
    assert await tokens_of(app, user) == {
        "ipad-1": "ab" * 32,
        "laptop": "https://fcm.googleapis.com/fcm/send/abc123",
        "pixel-1": "fcm-token-bbbb",
    }
    listed = await client.call("push.devices")
    assert [d["deviceId"] for d in listed["devices"]] == ["ipad-1", "laptop", "pixel-1"]
    assert (await client.call("push.unregister", {"deviceId": "laptop"}))["ok"] is True
    assert set(await tokens_of(app, user)) == {"ipad-1", "pixel-1"}
    error = await refused(client, "push.unregister", {"deviceId": "laptop"})
    assert error.name == "not_found"


async def test_a_token_moves_to_the_user_who_registered_it_last(app: App, clients: Clients) -> None:
    first, first_tokens = await clients.login()
    second, second_tokens = await clients.login(role="provider")
    await first.call(
        "push.register", {"platform": "android", "deviceId": "shared", "token": "fcm-shared-1"}
    )
    await second.call(
        "push.register", {"platform": "android", "deviceId": "shared", "token": "fcm-shared-1"}
    )
    assert await tokens_of(app, first_tokens["user"]["id"]) == {}
    assert await tokens_of(app, second_tokens["user"]["id"]) == {"shared": "fcm-shared-1"}


async def test_the_oldest_device_is_dropped_beyond_the_limit(
    make_app: Any, code_log: Any, clock: Any
) -> None:
    app = await make_app(push={"max_devices": 2})
    clients = Clients(app, code_log)
    try:
        client, tokens = await clients.login()
        for n in range(3):
            await client.call(
                "push.register",
                {"platform": "android", "deviceId": f"d{n}", "token": f"tok-{n}-xxxx"},
            )
            clock.advance(1)
        assert set(await tokens_of(app, tokens["user"]["id"])) == {"d1", "d2"}
    finally:
        await clients.close()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"platform": "android", "deviceId": "d"}, "params"),  # no token
        ({"platform": "web", "deviceId": "d", "token": "abcdefgh"}, "params"),
        ({"platform": "android", "deviceId": "d", "token": "has space"}, "token"),
        ({"platform": "android", "deviceId": "bad id", "token": "abcdefgh"}, "deviceId"),
        ({"platform": "blackberry", "deviceId": "d", "token": "abcdefgh"}, "platform"),
        (
            {
                "platform": "web",
                "deviceId": "d",
                "subscription": {
                    "endpoint": "https://fcm.googleapis.com/x",
                    "keys": {"p256dh": "AAAA", "auth": "AAAA"},
                },
            },
            "subscription.keys",
        ),
        (
            {
                "platform": "web",
                "deviceId": "d",
                "subscription": web_subscription("https://169.254.169.254/latest"),
            },
            "subscription.endpoint",
        ),
        (
            {
                "platform": "web",
                "deviceId": "d",
                "subscription": web_subscription("http://fcm.googleapis.com/fcm/send/x"),
            },
            "subscription.endpoint",
        ),
    ],
)
async def test_bad_registrations_are_refused_and_change_nothing(
    app: App, clients: Clients, params: dict[str, Any], field: str
) -> None:
    client, tokens = await clients.login()
    error = await refused(client, "push.register", params)
    assert error.name == "invalid_params"
    assert any(f["field"].startswith(field) for f in error.data["fields"]), error.data
    assert await tokens_of(app, tokens["user"]["id"]) == {}


async def test_settings_default_to_all_but_promotional_and_update_by_category(
    clients: Clients,
) -> None:
    client, _ = await clients.login()
    assert await client.call("push.settings.get") == {
        "bookings": True,
        "calls": True,
        "payments": True,
        "reminders": True,
        "promotional": False,
    }
    updated = await client.call("push.settings.update", {"promotional": True, "reminders": False})
    assert updated["promotional"] is True and updated["reminders"] is False
    assert updated["bookings"] is True
    again = await client.call("push.settings.update", {"bookings": False})
    assert again == {**updated, "bookings": False}
    assert await client.call("push.settings.get") == again
    error = await refused(client, "push.settings.update", {"calls": None})
    assert error.name == "invalid_params"
    error = await refused(client, "push.settings.update", {"sms": True})
    assert error.name == "invalid_params"
    assert await client.call("push.settings.get") == again


async def test_push_methods_need_a_logged_in_socket(clients: Clients) -> None:
    anonymous = await clients.anonymous()
    error = await refused(anonymous, "push.settings.get", {})
    assert error.name == "unauthenticated"
