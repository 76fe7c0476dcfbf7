"""The method registry: access rules, param validation, and the OpenRPC document."""

from __future__ import annotations

import pytest
from pydantic import Field

from kernel.errors import ALL_ERRORS, Forbidden, InvalidParams, Unauthenticated
from kernel.events import EventSpec
from kernel.rpc.registry import (
    Access,
    Caller,
    Empty,
    IdempotentParams,
    MethodRegistry,
    Params,
    Result,
    UserId,
)


class Greet(Params):
    full_name: str = Field(min_length=2)
    times: int = Field(1, ge=1, le=3)


class Greeting(Result):
    text: str


class Ping(Result):
    ok: bool = True


async def greet(caller: Caller, params: Greet) -> Greeting:
    """Say hello.

    Longer description that is not the summary."""
    return Greeting(text=f"hi {params.full_name}" * params.times)


def ping(caller: Caller, params: Empty) -> Ping:
    return Ping()


class Charge(IdempotentParams):
    amount: int


async def charge(caller: Caller, params: Charge) -> Ping:
    return Ping()


@pytest.fixture
def registry() -> MethodRegistry:
    r = MethodRegistry()
    r.add("demo.greet", greet, params=Greet, result=Greeting, roles=frozenset({"customer"}))
    r.add("demo.ping", ping, result=Ping, access=Access.PUBLIC)
    r.add("admin.ping", ping, result=Ping, access=Access.ADMIN)
    r.add("demo.charge", charge, params=Charge, result=Ping)
    r.add_event(EventSpec("demo.happened", Greeting, "Something happened"))
    return r


ANON = Caller(connection_id=1, ip=None)
CUSTOMER = Caller(connection_id=1, ip=None, user_id=UserId(5), role="customer")
PROVIDER = Caller(connection_id=1, ip=None, user_id=UserId(6), role="provider")
ADMIN = Caller(connection_id=1, ip=None, user_id=UserId(7), role="admin")


def test_access_rules(registry: MethodRegistry) -> None:
    greet_spec = registry.methods["demo.greet"]
    with pytest.raises(Unauthenticated):
        greet_spec.check_access(ANON)
    with pytest.raises(Forbidden):
        greet_spec.check_access(PROVIDER)
    greet_spec.check_access(CUSTOMER)
    registry.methods["demo.ping"].check_access(ANON)
    with pytest.raises(Forbidden):
        registry.methods["admin.ping"].check_access(CUSTOMER)
    registry.methods["admin.ping"].check_access(ADMIN)


def test_params_camel_case_and_errors_name_fields(registry: MethodRegistry) -> None:
    spec = registry.methods["demo.greet"]
    assert spec.parse_params({"fullName": "Asha", "times": 2}).full_name == "Asha"
    with pytest.raises(InvalidParams) as bad:
        spec.parse_params({"fullName": "A", "times": 9})
    fields = {f["field"] for f in bad.value.data["fields"]}
    assert fields == {"fullName", "times"}
    with pytest.raises(InvalidParams, match="unknown|Extra"):
        spec.parse_params({"fullName": "Asha", "sneaky": 1})
    with pytest.raises(InvalidParams, match="by name"):
        spec.parse_params(["Asha"])


def test_inline_and_idempotent_flags(registry: MethodRegistry) -> None:
    assert registry.methods["demo.ping"].inline
    assert not registry.methods["demo.greet"].inline
    assert registry.methods["demo.charge"].idempotent
    assert not registry.methods["demo.greet"].idempotent


def test_registering_twice_is_an_error(registry: MethodRegistry) -> None:
    with pytest.raises(ValueError):
        registry.add("demo.ping", ping, result=Ping)


def test_openrpc_document(registry: MethodRegistry) -> None:
    doc = registry.openrpc(title="t", version="1")
    methods = {m["name"]: m for m in doc["methods"]}
    assert list(methods) == sorted(methods)
    greet_doc = methods["demo.greet"]
    assert greet_doc["summary"] == "Say hello."
    assert greet_doc["x-access"] == "user" and greet_doc["x-roles"] == ["customer"]
    params = {p["name"]: p for p in greet_doc["params"]}
    assert params["fullName"]["required"] and not params["times"]["required"]
    assert params["times"]["schema"]["maximum"] == 3
    ref = greet_doc["result"]["schema"]["$ref"]
    assert ref == "#/components/schemas/Greeting"
    assert "text" in doc["components"]["schemas"]["Greeting"]["properties"]
    assert methods["demo.charge"]["params"][0]["name"] == "idempotencyKey"
    assert doc["x-events"][0]["name"] == "demo.happened"
    assert {e["code"] for e in doc["x-errors"]} == {e.code for e in ALL_ERRORS}


def test_only_camel_case_names_are_accepted(registry: MethodRegistry) -> None:
    with pytest.raises(InvalidParams):
        registry.methods["demo.greet"].parse_params({"full_name": "Asha"})


def test_ping_writes_exactly_the_json_of_its_declared_model() -> None:
    from rtc_server.session_methods import Pong, SessionMethods

    registry = MethodRegistry()
    SessionMethods(registry, None, None).register()  # type: ignore[arg-type]
    spec = registry.methods["system.ping"]
    encoded = spec.handler(ANON, Empty())
    pong = Pong.model_validate_json(encoded.json)  # type: ignore[union-attr]
    assert pong.pong is True and pong.server_time > 1_700_000_000_000
    assert spec.result is Pong and spec.inline
