"""One client socket: its identity, its limits, and the only way to write to it.

Writes never wait. A frame goes straight into the transport's buffer; when a client
reads so slowly that the buffer passes ``send_buffer_bytes``, the socket is closed
with 4008 (slow consumer) instead of letting memory grow. Nothing is lost by that:
events stay in the log and the client resumes from its last ``seq``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from kernel.errors import CloseCode
from kernel.rpc.registry import Caller, UserId
from rtc_server.delivery import DeliveryCursor
from rtc_server.ratelimit import TokenBucket
from rtc_server.sink import FrameSink

if TYPE_CHECKING:
    from kernel.identity import Identity
    from rtc_server.metrics import Metrics

log = logging.getLogger("rtc.socket")
_ids = itertools.count(1)


class Connection:
    __slots__ = (
        "id",
        "sink",
        "caller",
        "identity",
        "cursor",
        "bucket",
        "inflight",
        "refused_in_a_row",
        "auth_timer",
        "gap_timer",
        "pong_waiter",
        "closing",
        "closed_with",
        "auth_timeout",
        "anonymous_place",
        "_metrics",
        "_send_limit",
    )

    def __init__(
        self,
        sink: FrameSink,
        *,
        ip: str | None,
        metrics: Metrics,
        send_limit: int,
        rate: float,
        burst: int,
        auth_timeout: float,
    ) -> None:
        self.id = next(_ids)
        self.sink = sink  # the websocket (rtc_server.sink), or memory in driver tests
        self.caller = Caller(connection_id=self.id, ip=ip)
        self.identity: Identity | None = None
        self.cursor: DeliveryCursor | None = None
        self.bucket = TokenBucket(rate, burst, asyncio.get_running_loop().time())
        self.inflight = 0
        self.refused_in_a_row = 0
        self.auth_timer: asyncio.TimerHandle | None = None
        self.gap_timer: asyncio.TimerHandle | None = None
        self.pong_waiter: asyncio.Future[float] | None = None
        self.closing = False
        self.closed_with: int | None = None  # the close code this server sent, if it closed
        self.auth_timeout = auth_timeout
        # Frees this socket's place among its address's anonymous sockets (admission).
        self.anonymous_place: Callable[[], None] | None = None
        self._metrics = metrics
        self._send_limit = send_limit

    @property
    def user_id(self) -> UserId | None:
        return self.caller.user_id

    def bind(self, identity: Identity) -> None:
        """The socket now speaks for ``identity`` (a user's login session)."""
        self.identity = identity
        self.caller = replace(
            self.caller,
            user_id=identity.user_id,
            role=identity.role,
            session_id=identity.session_id,
        )
        if self.auth_timer is not None:
            self.auth_timer.cancel()
            self.auth_timer = None
        self.leave_anonymous()

    def leave_anonymous(self) -> None:
        place, self.anonymous_place = self.anonymous_place, None
        if place is not None:
            place()

    def arm_auth_timer(self) -> None:
        """An anonymous socket gets ``auth_timeout`` seconds to authenticate (else 4001)."""
        self.auth_timer = asyncio.get_running_loop().call_later(
            self.auth_timeout, self._auth_timed_out
        )

    def _auth_timed_out(self) -> None:
        self.auth_timer = None
        if self.identity is None:
            self.close(CloseCode.AUTH_TIMEOUT, "authenticate first")

    def unbind(self) -> None:
        """Back to anonymous (binding failed half-way), with a fresh auth timeout."""
        self.identity = None
        self.cursor = None
        self.caller = Caller(connection_id=self.id, ip=self.caller.ip)
        self.arm_auth_timer()

    def send(self, frame: bytes) -> bool:
        """Queue one text frame (UTF-8 JSON) without waiting; False if not sent."""
        sink = self.sink
        if self.closing or not sink.open:
            return False
        if sink.buffered() > self._send_limit:
            self._metrics.send_drops.inc()
            log.warning(
                "slow consumer: send buffer full, closing",
                extra={"user": self.user_id, "connection": self.id},
            )
            self.close(CloseCode.SLOW_CONSUMER, "send buffer full: reconnect and resume")
            return False
        try:
            sink.write(frame)
        except Exception:  # the transport died under us: the read loop will see it
            log.debug("write failed", exc_info=True)
            return False
        return True

    def deliver(self, seq: int, frame: bytes) -> list[bytes]:
        """A live event for this socket's user; returns what was sent, in order."""
        cursor = self.cursor
        if cursor is None:
            return []
        frames = cursor.offer(seq, frame)
        for out in frames:
            self.send(out)
        return frames

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake (does not wait for it)."""
        if self._mark_closing(code):
            # The closing handshake waits for the peer; run it in the background,
            # bounded by the library's close_timeout.
            task = asyncio.get_running_loop().create_task(self.sink.close(code, reason))
            _closing_tasks.add(task)
            task.add_done_callback(_closing_tasks.discard)

    async def close_now(self, code: int, reason: str) -> None:
        """Close from the socket's own read loop, waiting for the handshake."""
        if self._mark_closing(code):
            await self.sink.close(code, reason)

    def _mark_closing(self, code: int) -> bool:
        if self.closing:
            return False
        self.closing = True
        self.closed_with = code
        for timer in (self.auth_timer, self.gap_timer):
            if timer is not None:
                timer.cancel()
        return True


# Strong references to closing handshakes in progress (asyncio keeps only weak ones).
_closing_tasks: set[asyncio.Task[None]] = set()
