"""The bus over Redis pub/sub: targeted fan-out between instances.

Channels (``p`` is ``redis.prefix``): ``{p}bus:{instance id}`` carries the events for
the users of that instance, ``{p}bus:all`` the rare messages for every instance
(revoked sessions, signals). Each instance subscribes to its own channel and to
``all``, so it receives only what is for its own users, never the firehose.

Publishing an event: the routing script (:data:`.presence.ROUTE_SCRIPT`) looks up, inside
Redis, which instances hold each recipient and sends each of them one message with
only its users (one round trip whatever the number of recipients). The publishing
instance delivers to its own sockets directly, so it keeps serving them while Redis
is down.

Redis down: sending between instances stops; events stay durable in the log. What
could not be sent waits in a bounded queue. When the subscription is back, this
instance rewrites its presence entries (:meth:`RedisPresence.resync`), then runs the
``on_restored`` callbacks (the delivery catches every socket up from the log), then
resends the queue. Order and duplicates are the delivery cursors' business, so a
resent or caught-up event is never shown twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from kernel.bus import BusMessage, EventBatch
from rtc_server.config import RedisSettings
from rtc_server.metrics import Metrics
from rtc_server.scaleout import wire
from rtc_server.scaleout.presence import RedisPresence

log = logging.getLogger("rtc.bus")

_DOWN = (RedisError, OSError, TimeoutError)
# Up to this many recipients, local delivery goes first (it is quicker than making a
# task to overlap it with the Redis round trip).
_SMALL_BATCH = 64


def new_instance_id() -> str:
    """Unique per process start: a restarted instance never inherits entries or epochs."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def redacted(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisBus:
    def __init__(
        self, settings: RedisSettings, metrics: Metrics, *, instance_id: str | None = None
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self.instance_id = instance_id or new_instance_id()
        # Bounded: a burst of publishes waits for a connection instead of opening
        # thousands (the pub/sub subscription has a connection of its own).
        pool = BlockingConnectionPool.from_url(
            settings.url,
            max_connections=settings.pool_max,
            timeout=settings.socket_timeout,
            socket_timeout=settings.socket_timeout,
            socket_connect_timeout=settings.socket_timeout,
        )
        self._client = Redis.from_pool(pool)  # closes the pool with the client
        self.presence = RedisPresence(
            self._client,
            prefix=settings.prefix,
            instance_id=self.instance_id,
            lease=settings.presence_lease,
        )
        self._channel_prefix = f"{settings.prefix}bus:"
        self._own_channel = f"{self._channel_prefix}{self.instance_id}"
        self._all_channel = f"{self._channel_prefix}all"
        self._receiver: Callable[[BusMessage], None] = lambda message: None
        self._restored: list[Callable[[], Awaitable[None]]] = []
        self._watched: set[int] = set()
        self._retry: deque[BusMessage] = deque(maxlen=settings.retry_queue)
        self._up = False
        self._ever_up = False
        self._reconnect = False
        self._closing = False
        self._first_up = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()

    # -- the Bus interface ---------------------------------------------------------

    def set_receiver(self, receiver: Callable[[BusMessage], None]) -> None:
        self._receiver = receiver

    def on_restored(self, callback: Callable[[], Awaitable[None]]) -> None:
        self._restored.append(callback)

    async def start(self) -> None:
        self.presence.start()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._subscribe_forever()),
            loop.create_task(self._heartbeat_forever()),
        ]
        try:
            await asyncio.wait_for(self._first_up.wait(), self._settings.socket_timeout)
        except TimeoutError:
            # Serve this instance's own sockets; keep trying (readiness says "bus").
            log.error(
                "redis unreachable at start: serving degraded until it answers",
                extra={"url": redacted(self._settings.url)},
            )
        else:
            log.info(
                "redis bus up",
                extra={"url": redacted(self._settings.url), "instance": self.instance_id},
            )

    async def close(self) -> None:
        if self._up:
            try:
                await asyncio.wait_for(self.presence.leave(), self._settings.socket_timeout)
            except _DOWN:
                pass  # the lease runs out and the survivors clean up
        self._closing = True
        tasks = [*self._tasks, *self._background]
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: redis-py can swallow a cancellation inside a command (the
            # loops also stop on _closing).
            await asyncio.wait(tasks, timeout=5)
        await self.presence.close()
        await self._client.aclose()
        self._set_up(False)

    async def publish(self, message: BusMessage) -> None:
        if not self._up:
            if self._settings.retry_queue:
                self._keep_for_retry(message)
            self._receiver(message)  # this instance's own sockets, Redis or not
            return
        if isinstance(message, EventBatch) and len(message.seqs) > _SMALL_BATCH:
            # A big fan-out: send to the other instances first (one round trip,
            # on its way before the local delivery occupies the loop), then deliver
            # here while they deliver there.
            remote = asyncio.get_running_loop().create_task(self._send(message))
            await asyncio.sleep(0)
            self._receiver(message)
            await remote
            return
        self._receiver(message)  # a few sockets: microseconds
        await self._send(message)

    def watch(self, user_id: int) -> None:
        self._watched.add(user_id)
        self._metrics.presence_users.set(len(self._watched))
        self.presence.watch(user_id)

    def unwatch(self, user_id: int) -> None:
        self._watched.discard(user_id)
        self._metrics.presence_users.set(len(self._watched))
        self.presence.unwatch(user_id)

    async def routed(self, user_id: int) -> None:
        pending = self.presence.pending(user_id)
        if pending is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(pending), self._settings.watch_timeout)
        except TimeoutError:
            # Redis is slow or down: go on; the catch-up after it returns covers this.
            log.warning("presence not written in time", extra={"user": user_id})

    async def online(self, user_ids: Iterable[int]) -> set[int]:
        users = set(user_ids)
        local = users & self._watched
        if not self._up:
            return local  # degraded: what this instance knows
        try:
            found = await self.presence.instances_of(users - local)
        except _DOWN:
            return local
        # This instance's own entries may lag (writes are queued): it knows better.
        return local | {user for user, where in found.items() if where - {self.instance_id}}

    @property
    def healthy(self) -> bool:
        return self._up

    # -- sending -------------------------------------------------------------------

    async def _send(self, message: BusMessage) -> None:
        try:
            if isinstance(message, EventBatch):
                await self.presence.route(
                    args=[
                        self.instance_id,
                        self.presence.presence_prefix,
                        self._channel_prefix,
                        wire.event_head(message.event, message.published_at),
                        message.payload,
                        ",".join(map(str, message.seqs)),
                        ",".join(map(str, message.seqs.values())),
                    ]
                )
            else:
                await self._client.publish(
                    self._all_channel, wire.encode(message, self.instance_id)
                )
            self._metrics.bus_sent.inc()
        except _DOWN as exc:
            self._metrics.bus_send_failures.inc()
            self._keep_for_retry(message)
            self._lost(f"publish failed: {exc}")

    def _keep_for_retry(self, message: BusMessage) -> None:
        if len(self._retry) == self._retry.maxlen:
            self._metrics.bus_retry_dropped.inc()
        self._retry.append(message)

    async def _resend(self) -> None:
        while self._retry and self._up:
            await self._send(self._retry.popleft())

    # -- receiving -----------------------------------------------------------------

    def _on_message(self, data: bytes) -> None:
        try:
            message, sender = wire.decode(data)
        except wire.WireError:
            self._metrics.bus_unreadable.inc()
            log.exception("unreadable bus message dropped")
            return
        if sender == self.instance_id:
            return  # a broadcast of ours: handled locally when published
        self._metrics.bus_received.inc()
        try:
            self._receiver(message)
        except Exception:  # noqa: BLE001 - the subscription must outlive a bad message
            log.exception("delivering a bus message failed")

    async def _subscribe_forever(self) -> None:
        backoff = 0.1
        while not self._closing:
            pubsub = self._client.pubsub()
            try:
                await self._subscribe(pubsub)
                await self.presence.resync()
                await self.presence.heartbeat()
                self._metrics.presence_instances.set(len(self.presence.live_instances))
                self._reconnect = False
                self._came_up()
                backoff = 0.1
                while not self._reconnect and not self._closing:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message["type"] == "message":
                        self._on_message(message["data"])
                if self._reconnect:
                    raise ConnectionError("heartbeat failed: reconnecting")
            except _DOWN as exc:
                self._lost(str(exc))
            except Exception as exc:  # noqa: BLE001 - a bug must not end the subscription
                log.exception("redis bus subscription failed; resubscribing")
                self._lost(repr(exc))
            finally:
                await _close_quietly(pubsub)
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 2.0)

    async def _subscribe(self, pubsub: PubSub) -> None:
        await pubsub.subscribe(self._own_channel, self._all_channel)
        confirmed = 0
        while confirmed < 2:  # subscribed for real before presence says "here"
            message = await pubsub.get_message(timeout=self._settings.socket_timeout)
            if message is None:
                raise TimeoutError("no subscribe confirmation")
            if message["type"] == "subscribe":
                confirmed += 1
            elif message["type"] == "message":
                self._on_message(message["data"])

    async def _heartbeat_forever(self) -> None:
        interval = self._settings.presence_lease / 3
        while not self._closing:
            await asyncio.sleep(interval)
            if not self._up:
                continue
            try:
                await self.presence.heartbeat()
                self._metrics.presence_instances.set(len(self.presence.live_instances))
            except _DOWN as exc:
                self._lost(f"heartbeat failed: {exc}")
            except Exception as exc:  # noqa: BLE001 - keep the lease loop alive
                log.exception("presence heartbeat failed")
                self._lost(repr(exc))

    def _came_up(self) -> None:
        restored = self._ever_up
        self._ever_up = True
        self._set_up(True)
        self._first_up.set()
        if restored:
            self._metrics.bus_reconnects.inc()
            log.info("redis bus restored: catching up from the log")
            self._spawn(self._after_restore())

    async def _after_restore(self) -> None:
        for callback in self._restored:
            try:
                await callback()
            except Exception:  # noqa: BLE001 - one failed catch-up must not stop the rest
                log.exception("catch-up after the bus came back failed")
        await self._resend()

    def _lost(self, why: str) -> None:
        if self._up:
            log.warning("redis bus down: serving own sockets only", extra={"error": why})
        self._set_up(False)
        self._reconnect = True
        self.presence.in_sync = False

    def _set_up(self, up: bool) -> None:
        self._up = up
        self._metrics.bus_up.set(1 if up else 0)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


async def _close_quietly(pubsub: PubSub) -> None:
    try:
        await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
    except _DOWN:
        pass
