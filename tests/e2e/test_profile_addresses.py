"""Profile (``me.*``) and addresses over real sockets against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from rtc_server.client import RpcCallError, RtcClient

from .conftest import Clients

_keys = itertools.count(1)


def key() -> str:
    return f"test-key-{next(_keys):06d}"


def address(**fields: Any) -> dict[str, Any]:
    return {
        "idempotencyKey": key(),
        "type": "home",
        "state": "Karnataka",
        "city": "Bengaluru",
        "fullAddress": "12, 4th Cross, Indiranagar",
        "pincode": "560038",
        **fields,
    }


async def refused(
    client: RtcClient, method: str, params: dict[str, Any] | None = None
) -> RpcCallError:
    with pytest.raises(RpcCallError) as error:
        await client.call(method, params)
    return error.value


# --- Profile ----------------------------------------------------------------------------


async def test_me_get_and_update_email(clients: Clients) -> None:
    client, tokens = await clients.login()
    me = await client.call("me.get")
    assert me["id"] == tokens["user"]["id"] and me["email"] is None
    assert me["nameChangeCount"] == 0 and me["nameChangesLeft"] == 2
    me = await client.call("me.update", {"email": "  Asha.Rao@Example.COM "})
    assert me["email"] == "Asha.Rao@example.com"
    assert (await client.call("me.get"))["email"] == "Asha.Rao@example.com"
    me = await client.call("me.update", {"email": None})
    assert me["email"] is None


async def test_full_name_changes_at_most_twice(clients: Clients) -> None:
    client, _ = await clients.login()
    # The first name is no change; the same name again is no change either.
    assert (await client.call("me.update", {"fullName": "Asha"}))["nameChangeCount"] == 0
    assert (await client.call("me.update", {"fullName": "Asha"}))["nameChangeCount"] == 0
    assert (await client.call("me.update", {"fullName": "Asha Rao"}))["nameChangesLeft"] == 1
    assert (await client.call("me.update", {"fullName": "Asha K Rao"}))["nameChangesLeft"] == 0
    error = await refused(client, "me.update", {"fullName": "Someone Else", "email": "a@b.in"})
    assert error.name == "unprocessable" and error.data["reason"] == "name_change_limit"
    me = await client.call("me.get")
    assert me["fullName"] == "Asha K Rao" and me["email"] is None  # nothing changed
    assert (await client.call("me.update", {"fullName": "Asha K Rao"}))["nameChangeCount"] == 2


async def test_email_is_unique_whatever_its_case(clients: Clients) -> None:
    first, _ = await clients.login()
    second, _ = await clients.login(role="provider")
    await first.call("me.update", {"email": "ravi@example.com"})
    error = await refused(second, "me.update", {"email": "RAVI@Example.com"})
    assert error.name == "conflict" and error.data["field"] == "email"
    assert (await second.call("me.get"))["email"] is None
    await first.call("me.update", {"email": None})  # freed, it can be taken
    assert (await second.call("me.update", {"email": "RAVI@Example.com"}))["email"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": "a@b"}, "email"),
        ({"email": "x" * 250 + "@example.com"}, "email"),
        ({"fullName": "A"}, "fullName"),
        ({"fullName": "x" * 101}, "fullName"),
        ({"fullName": "bad\x00name"}, "fullName"),
        ({"phone": "+919999999999"}, "phone"),
    ],
)
async def test_me_update_refuses_bad_input_naming_the_field(
    clients: Clients, params: dict[str, Any], field: str
) -> None:
    client, _ = await clients.login()
    before = await client.call("me.get")
    error = await refused(client, "me.update", params)
    assert error.code == -32602 and error.data["fields"][0]["field"] == field
    assert await client.call("me.get") == before


# --- Addresses --------------------------------------------------------------------------


async def test_address_create_list_update_delete(clients: Clients) -> None:
    client, _ = await clients.login()
    created = await client.call("addresses.create", address(type="office"))
    assert created["type"] == "office" and created["pincode"] == "560038"
    assert created["fullAddress"] == "12, 4th Cross, Indiranagar"
    page = await client.call("addresses.list")
    assert page == {"addresses": [created], "nextAfter": None}
    updated = await client.call(
        "addresses.update", {"id": created["id"], "city": None, "pincode": "110001"}
    )
    assert updated["city"] is None and updated["pincode"] == "110001"
    assert updated["state"] == "Karnataka"
    assert await client.call("addresses.delete", {"id": created["id"]}) == {"ok": True}
    assert (await client.call("addresses.list"))["addresses"] == []
    error = await refused(client, "addresses.delete", {"id": created["id"]})
    assert error.name == "not_found"


async def test_at_most_three_addresses_even_concurrently(clients: Clients) -> None:
    client, _ = await clients.login()
    results = await asyncio.gather(
        *(client.call("addresses.create", address()) for _ in range(5)), return_exceptions=True
    )
    assert sum(isinstance(r, dict) for r in results) == 3
    errors = [r for r in results if isinstance(r, RpcCallError)]
    assert len(errors) == 2 and all(e.data["reason"] == "address_limit" for e in errors)
    first = await client.call("addresses.list", {"limit": 2})
    assert len(first["addresses"]) == 2 and first["nextAfter"] is not None
    rest = await client.call("addresses.list", {"limit": 2, "after": first["nextAfter"]})
    assert len(rest["addresses"]) == 1 and rest["nextAfter"] is None
    await client.call("addresses.delete", {"id": rest["addresses"][0]["id"]})
    await client.call("addresses.create", address())  # room again


async def test_address_create_retry_creates_once(clients: Clients) -> None:
    client, _ = await clients.login()
    params = address()
    first = await client.call("addresses.create", params)
    assert await client.call("addresses.create", params) == first
    assert len((await client.call("addresses.list"))["addresses"]) == 1


async def test_another_users_address_is_not_found_and_unchanged(clients: Clients) -> None:
    owner, _ = await clients.login()
    other, _ = await clients.login()
    mine = await owner.call("addresses.create", address())
    for method, params in [
        ("addresses.update", {"id": mine["id"], "state": "Goa"}),
        ("addresses.delete", {"id": mine["id"]}),
    ]:
        error = await refused(other, method, params)
        assert error.name == "not_found" and "Karnataka" not in error.message
    assert (await other.call("addresses.list"))["addresses"] == []
    assert (await owner.call("addresses.list"))["addresses"] == [mine]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"pincode": "012345"}, "pincode"),
        ({"pincode": "56003"}, "pincode"),
        ({"pincode": "5600381"}, "pincode"),
        ({"type": "work"}, "type"),
        ({"state": "K"}, "state"),
        ({"state": "x" * 101}, "state"),
        ({"city": "x" * 101}, "city"),
        ({"fullAddress": "short"}, "fullAddress"),
        ({"fullAddress": "x" * 501}, "fullAddress"),
        ({"idempotencyKey": "k"}, "idempotencyKey"),
    ],
)
async def test_address_bad_input_is_refused_naming_the_field(
    clients: Clients, fields: dict[str, Any], field: str
) -> None:
    client, _ = await clients.login()
    error = await refused(client, "addresses.create", address(**fields))
    assert error.code == -32602 and error.data["fields"][0]["field"] == field
    assert (await client.call("addresses.list"))["addresses"] == []


async def test_address_update_refuses_nulls_and_bad_fields(clients: Clients) -> None:
    client, _ = await clients.login()
    mine = await client.call("addresses.create", address())
    for params, field in (
        ({"id": mine["id"], "state": None}, "state"),
        ({"id": mine["id"], "fullAddress": None}, "fullAddress"),
        ({"id": mine["id"], "pincode": "000000"}, "pincode"),
        ({"id": mine["id"], "userId": 1}, "userId"),
    ):
        error = await refused(client, "addresses.update", params)
        assert error.code == -32602 and error.data["fields"][0]["field"] == field
    assert (await client.call("addresses.list"))["addresses"] == [mine]
    error = await refused(client, "addresses.list", {"limit": 51})
    assert error.code == -32602 and error.data["fields"][0]["field"] == "limit"
