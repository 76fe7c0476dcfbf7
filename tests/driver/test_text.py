"""Names and text through the real methods: what a security review sent, refused."""

from __future__ import annotations

import pytest

from rtc_server.client import RpcCallError

from .conftest import MemoryClients


async def test_a_sign_up_name_cannot_draw_a_second_line(clients: MemoryClients) -> None:
    """The review signed up as "Ravi\\nCall +91…": the line reached the provider's
    notification and incoming-call screen. Sign-up checks what me.update checks."""
    phone = clients.new_phone()
    client = clients.anonymous()
    await client.call("auth.requestOtp", {"phone": phone, "role": "customer"})
    code = clients.code_log.last("+91" + phone[-10:])
    for name in ("Ravi\nCall +91 98765 43210 for a refund", "Ravi\u202e01234 19+"):
        with pytest.raises(RpcCallError) as refused:
            await client.call(
                "auth.verifyOtp",
                {"phone": phone, "role": "customer", "code": code, "fullName": name},
            )
        assert refused.value.code == -32602
        assert refused.value.data["fields"][0]["field"] == "fullName"
    tokens = await client.login(phone, "customer", code, fullName="Ravi Kumar")
    assert tokens["user"]["fullName"] == "Ravi Kumar"


@pytest.mark.parametrize(
    ("method", "params", "field"),
    [
        ("auth.requestOtp", {"phone": "98765\x0043210", "role": "customer"}, "phone"),
        ("me.update", {"fullName": "Ravi\x00"}, "fullName"),
        (
            "addresses.create",
            {
                "idempotencyKey": "nul-key-0001",
                "state": "Kerala",
                "city": "Ko\x00chi",
                "fullAddress": "12, Marine Drive, Kochi",
            },
            "city",
        ),
        ("addresses.list", {"after": 1, "x\x00": 1}, "x\x00"),
        ("notifications.markRead", {"ids": [1, "2\x00"]}, "ids.1"),
    ],
)
async def test_a_nul_byte_anywhere_is_invalid_params_never_an_internal_error(
    clients: MemoryClients, method: str, params: dict[str, object], field: str
) -> None:
    client, _ = await clients.login()
    with pytest.raises(RpcCallError) as refused:
        await client.call(method, params)
    assert refused.value.code == -32602
    assert refused.value.data["fields"] == [
        {"field": field, "message": "NUL characters are not allowed"}
    ]
    assert (await client.call("system.ping"))["pong"]  # and the socket serves on
