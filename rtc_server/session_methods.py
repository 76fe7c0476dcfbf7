"""Methods of the core itself: ping, discovery, binding a socket, acknowledging events."""

from __future__ import annotations

import time
from typing import Any

from pydantic import Field, RootModel

from kernel.errors import Conflict
from kernel.events import EventSpec
from kernel.identity import Authenticator
from kernel.rpc.registry import (
    Access,
    Caller,
    Empty,
    Encoded,
    MethodRegistry,
    Params,
    Result,
)
from rtc_server.dispatch import current_connection
from rtc_server.events import EventDelivery
from rtc_server.session_state import Resumed, SessionState, session_state

SESSION_READY = EventSpec(
    "session.ready",
    SessionState,
    "Sent first on a socket authenticated at the handshake: the same fields as the "
    "answer of session.authenticate, directly in params (not an event: no seq)",
    logged=False,
)


class Pong(Result):
    pong: bool = True
    server_time: int = Field(description="Server time, Unix milliseconds")


class Document(RootModel[dict[str, Any]]):
    pass


class Authenticate(Params):
    access_token: str = Field(min_length=1, max_length=4096)
    last_seq: int | None = Field(
        None,
        ge=0,
        description="The last event seq this app saw; omitted: after the last acknowledged",
    )


class Ack(Params):
    seq: int = Field(ge=0, le=2**62)


class Acked(Result):
    acked_seq: int


class SessionMethods:
    def __init__(
        self, registry: MethodRegistry, authenticator: Authenticator, delivery: EventDelivery
    ) -> None:
        self._registry = registry
        self._authenticator = authenticator
        self._delivery = delivery
        self._discovery: Encoded | None = None

    def register(self) -> None:
        r = self._registry
        r.add("system.ping", self.ping, result=Pong, access=Access.PUBLIC)
        r.add("rpc.discover", self.discover, result=Document, access=Access.PUBLIC)
        r.add(
            "session.authenticate",
            self.authenticate,
            params=Authenticate,
            result=SessionState,
            access=Access.PUBLIC,
        )
        r.add("events.ack", self.ack, params=Ack, result=Acked)
        r.add_event(SESSION_READY)

    def ping(self, caller: Caller, params: Empty) -> Encoded:
        """Liveness and clock check; works before login."""
        # The Pong model's JSON, written directly: this is the hottest method.
        return Encoded(b'{"pong":true,"serverTime":%d}' % int(time.time() * 1000))

    def discover(self, caller: Caller, params: Empty) -> Encoded:
        """The OpenRPC document of every method, event and error."""
        # Built and encoded once (the registry is complete before sockets open): an
        # anonymous socket asking for it costs a copy into its send buffer.
        if self._discovery is None:
            document = Document(self._registry.openrpc(title="BuildXpert RTC", version="1"))
            self._discovery = Encoded(document.model_dump_json(by_alias=True).encode())
        return self._discovery

    async def authenticate(self, caller: Caller, params: Authenticate) -> SessionState:
        """Bind this socket to a user, or renew its access token; then resume events.

        First call: events after ``lastSeq`` are replayed (after this answer), then
        live events follow. On a socket already bound, the same user's new token
        extends it without replaying anything.
        """
        conn = current_connection.get()
        identity = await self._authenticator.authenticate(params.access_token)
        if conn.identity is not None:
            if conn.identity.user_id != identity.user_id:
                raise Conflict("this socket belongs to another user; open a new one")
            conn.bind(identity)
            cursor = conn.cursor
            last = max(cursor.last_sent, cursor.highest) if cursor is not None else 0
            return session_state(identity, Resumed(True, last, last))
        conn.bind(identity)
        resumed = await self._delivery.resume(conn, params.last_seq)
        # The replay task starts after this answer is written (no await in between).
        self._delivery.start_replay(conn, resumed)
        return session_state(identity, resumed)

    async def ack(self, caller: Caller, params: Ack) -> Acked:
        """Acknowledge every event up to ``seq`` (cumulative, across the user's devices)."""
        acked = await self._delivery.acknowledge(current_connection.get(), params.seq)
        return Acked(acked_seq=acked)
