"""Logging in an admin in end-to-end tests: admin accounts are made by an operator."""

from __future__ import annotations

from typing import Any

from rtc_server.client import RtcClient
from storage import accounts

from .conftest import Clients, e164


async def login_admin(clients: Clients) -> tuple[RtcClient, Any]:
    phone = clients.new_phone()
    assert clients.app.db is not None
    await accounts.create_admin(clients.app.db, e164(phone), "Ops")
    return await clients.login(phone, role="admin")
