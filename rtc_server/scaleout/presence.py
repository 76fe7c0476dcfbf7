"""Presence in Redis: which users hold sockets on which instances.

Keys (``p`` is ``redis.prefix``)::

    {p}presence:{user}      hash   instance id -> epoch of that instance's entry
    {p}instance:{id}:users  set    users this instance has entries for (for clean-up)
    {p}instances            zset   instance id -> lease expiry (ms, Redis clock)

Leases: every instance renews its own lease every ``presence_lease / 3`` seconds; a
lease that ran out means the instance died (SIGKILL, a lost host). The next heartbeat
of any survivor claims the dead instance (``ZREM`` answers 1 to one of them only) and
removes its entries. Readers ignore entries of instances without a live lease, so a
dead instance's users stop counting as online as soon as its lease runs out.

Epochs: each entry an instance writes carries a new epoch, and removing an entry only
succeeds if it still has the epoch it was written with (compare-and-delete in one
script). A late disconnect (a slow writer, a retry) can therefore never erase the entry
of a newer connection of the same user. Writes of one instance also go through one
ordered queue, pipelined: a burst of logins costs one round trip, not one each.

The routing script (:data:`ROUTE_SCRIPT`) reads these entries inside Redis and sends an
event to each instance holding one of its recipients, one message per instance.
Scripts name keys that are not in ``KEYS``: this needs one Redis server (or a
primary with replicas), not Redis Cluster.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("rtc.presence")

# KEYS: none. ARGV: presence key prefix, own users set, user, epoch, own id.
_REMOVE = """
if redis.call('HGET', ARGV[1] .. ARGV[3], ARGV[5]) == ARGV[4] then
    redis.call('HDEL', ARGV[1] .. ARGV[3], ARGV[5])
    redis.call('SREM', ARGV[2], ARGV[3])
    return 1
end
return 0
"""

# Renew the own lease, claim and clean up dead instances, return the live ones.
# ARGV: instances zset, own id, lease ms, presence key prefix, instance key prefix.
_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', ARGV[1], now + tonumber(ARGV[3]), ARGV[2])
local dead = redis.call('ZRANGEBYSCORE', ARGV[1], '-inf', now)
local cleaned = 0
for _, id in ipairs(dead) do
    if redis.call('ZREM', ARGV[1], id) == 1 then
        local users_key = ARGV[5] .. id .. ':users'
        for _, user in ipairs(redis.call('SMEMBERS', users_key)) do
            redis.call('HDEL', ARGV[4] .. user, id)
        end
        redis.call('DEL', users_key)
        cleaned = cleaned + 1
    end
end
return {cleaned, redis.call('ZRANGEBYSCORE', ARGV[1], now, '+inf')}
"""

# Drop every entry of this instance (before writing its current ones again).
# ARGV: presence key prefix, own users set, own id.
_RESET = """
for _, user in ipairs(redis.call('SMEMBERS', ARGV[2])) do
    redis.call('HDEL', ARGV[1] .. user, ARGV[3])
end
redis.call('DEL', ARGV[2])
return 1
"""

# Which live instances hold each user: flat {user, instance, user, instance, ...}.
# ARGV: presence key prefix, instances zset, users (comma-separated).
_WHERE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local found = {}
for user in string.gmatch(ARGV[3], '%d+') do
    for _, id in ipairs(redis.call('HKEYS', ARGV[1] .. user)) do
        local lease = redis.call('ZSCORE', ARGV[2], id)
        if lease and tonumber(lease) >= now then
            found[#found + 1] = user
            found[#found + 1] = id
        end
    end
end
return found
"""

# Send an event to every other instance holding a socket of one of its recipients:
# one PUBLISH per instance, carrying only that instance's users and their seqs.
# ARGV: own id, presence key prefix, channel prefix, message head (wire.event_head),
# payload, users (comma-separated), seqs (comma-separated, same order).
ROUTE_SCRIPT = """
local seqs = {}
for s in string.gmatch(ARGV[7], '%d+') do seqs[#seqs + 1] = s end
local targets, order, i = {}, {}, 0
for user in string.gmatch(ARGV[6], '%d+') do
    i = i + 1
    for _, id in ipairs(redis.call('HKEYS', ARGV[2] .. user)) do
        if id ~= ARGV[1] then
            local t = targets[id]
            if t == nil then
                t = {{}, {}}
                targets[id] = t
                order[#order + 1] = id
            end
            t[1][#t[1] + 1] = user
            t[2][#t[2] + 1] = seqs[i]
        end
    end
end
for _, id in ipairs(order) do
    local t = targets[id]
    redis.call('PUBLISH', ARGV[3] .. id, ARGV[4] .. '"u":[' .. table.concat(t[1], ',')
        .. '],"s":[' .. table.concat(t[2], ',') .. ']}\\n' .. ARGV[5])
end
return #order
"""


@dataclass
class _Write:
    user_id: int
    epoch: int
    add: bool
    done: asyncio.Future[None] | None = field(default=None)


class RedisPresence:
    """This instance's entries in Redis, and what every instance's entries say."""

    def __init__(self, client: Redis, *, prefix: str, instance_id: str, lease: float) -> None:
        self._client = client
        self.instance_id = instance_id
        self._lease_ms = int(lease * 1000)
        self._presence_prefix = f"{prefix}presence:"
        self._instance_prefix = f"{prefix}instance:"
        self._instances_key = f"{prefix}instances"
        self._own_users_key = f"{prefix}instance:{instance_id}:users"
        self._remove = client.register_script(_REMOVE)
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._reset = client.register_script(_RESET)
        self._where = client.register_script(_WHERE)
        self.route = client.register_script(ROUTE_SCRIPT)
        self._epoch = 0
        self._epochs: dict[int, int] = {}  # user -> epoch of this instance's entry
        self._pending: dict[int, asyncio.Future[None]] = {}  # entries not yet written
        self._queue: list[_Write] = []
        self._wake = asyncio.Event()
        self._resync: asyncio.Future[None] | None = None
        self._closing = False
        self._writer: asyncio.Task[None] | None = None
        self.live_instances: frozenset[str] = frozenset({instance_id})
        self.in_sync = False  # Redis holds every entry of this instance

    @property
    def presence_prefix(self) -> str:
        return self._presence_prefix

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write_forever())

    async def close(self) -> None:
        self._closing = True
        if self._writer is not None:
            # redis-py can swallow a cancellation that lands inside a command: the
            # flag ends the loop then, and the wait is bounded whatever happens.
            self._wake.set()
            self._writer.cancel()
            await asyncio.wait([self._writer], timeout=5)
            self._writer = None

    # -- this instance's entries -------------------------------------------------

    def watch(self, user_id: int) -> asyncio.Future[None]:
        """Write the user's entry; the future completes once Redis has it (or failed)."""
        self._epoch += 1
        self._epochs[user_id] = self._epoch
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[user_id] = done

        def written(future: asyncio.Future[None]) -> None:
            if self._pending.get(user_id) is future:
                del self._pending[user_id]

        done.add_done_callback(written)
        self._enqueue(_Write(user_id, self._epoch, True, done))
        return done

    def epoch_of(self, user_id: int) -> int:
        """The epoch of this instance's entry for the user (0: none)."""
        return self._epochs.get(user_id, 0)

    async def remove_entry(self, user_id: int, epoch: int) -> bool:
        """Remove the user's entry if it still has ``epoch``; True if it was removed."""
        args: list[str | int] = [
            self._presence_prefix,
            self._own_users_key,
            user_id,
            epoch,
            self.instance_id,
        ]
        return bool(await self._remove(args=args))

    def pending(self, user_id: int) -> asyncio.Future[None] | None:
        """The user's entry still on its way to Redis, if any."""
        return self._pending.get(user_id)

    def unwatch(self, user_id: int) -> None:
        epoch = self._epochs.pop(user_id, None)
        if epoch is not None:
            self._enqueue(_Write(user_id, epoch, False))

    def _enqueue(self, write: _Write) -> None:
        self._queue.append(write)
        self._wake.set()

    async def _write_forever(self) -> None:
        # The only task that writes this instance's entries: a resync and the writes
        # queued around it can never overtake each other.
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            writes, self._queue = self._queue, []
            resync, self._resync = self._resync, None
            try:
                if resync is not None:
                    # The snapshot includes every queued write: they are obsolete.
                    await self._write_all()
                    self.in_sync = True
                    resync.set_result(None)
                elif writes and self.in_sync:
                    await self._write(writes)
            except Exception as exc:  # noqa: BLE001 - the only writer must keep running
                # What was not written is written by the next resync.
                self.in_sync = False
                if resync is not None and not resync.done():
                    resync.set_exception(exc)
                if isinstance(exc, RedisError | OSError):
                    log.warning("presence write failed", extra={"error": str(exc)})
                else:
                    log.exception("presence write failed")
            for write in writes:
                if write.done is not None and not write.done.done():
                    write.done.set_result(None)
            if resync is not None:
                # Entries the resync wrote are no longer on their way.
                for future in list(self._pending.values()):
                    if not future.done():
                        future.set_result(None)

    async def _write(self, writes: list[_Write]) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for w in writes:
                if w.add:
                    pipe.hset(f"{self._presence_prefix}{w.user_id}", self.instance_id, w.epoch)
                    pipe.sadd(self._own_users_key, w.user_id)
                else:
                    await self._remove(
                        args=[
                            self._presence_prefix,
                            self._own_users_key,
                            w.user_id,
                            w.epoch,
                            self.instance_id,
                        ],
                        client=pipe,
                    )
            await pipe.execute()

    async def resync(self) -> None:
        """Replace every entry of this instance in Redis by what it holds now.

        After Redis came back (it may have lost everything, or kept entries of users
        who left meanwhile). Run it before reading the log to catch up, so that any
        event committed after that read is routed here. Raises if Redis fails.
        """
        if self._resync is None:
            self._resync = asyncio.get_running_loop().create_future()
            # Retrieved here too: a caller cancelled meanwhile leaves no stray error.
            self._resync.add_done_callback(lambda f: f.cancelled() or f.exception())
        waiting = self._resync
        self._wake.set()
        await asyncio.shield(waiting)

    async def _write_all(self) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            await self._reset(
                args=[self._presence_prefix, self._own_users_key, self.instance_id], client=pipe
            )
            for user_id, epoch in self._epochs.items():
                pipe.hset(f"{self._presence_prefix}{user_id}", self.instance_id, epoch)
                pipe.sadd(self._own_users_key, user_id)
            await pipe.execute()

    async def heartbeat(self) -> int:
        """Renew this instance's lease and clean up dead ones; returns how many died."""
        cleaned, live = await self._heartbeat(
            args=[
                self._instances_key,
                self.instance_id,
                self._lease_ms,
                self._presence_prefix,
                self._instance_prefix,
            ]
        )
        self.live_instances = frozenset(i.decode() for i in live) | {self.instance_id}
        if cleaned:
            log.info("dead instances cleaned up", extra={"instances": int(cleaned)})
        return int(cleaned)

    async def leave(self) -> None:
        """Remove this instance from Redis (a clean shutdown, not waiting for the lease)."""
        async with self._client.pipeline(transaction=True) as pipe:
            await self._reset(
                args=[self._presence_prefix, self._own_users_key, self.instance_id], client=pipe
            )
            pipe.zrem(self._instances_key, self.instance_id)
            await pipe.execute()

    # -- everyone's entries ------------------------------------------------------

    async def instances_of(self, user_ids: Iterable[int]) -> dict[int, set[str]]:
        """The live instances holding sockets of each user (users with none are left out).

        Liveness is read from the leases at the time of the call, inside Redis.
        """
        users = ",".join(map(str, user_ids))
        if not users:
            return {}
        flat = await self._where(args=[self._presence_prefix, self._instances_key, users])
        found: dict[int, set[str]] = {}
        for i in range(0, len(flat), 2):
            found.setdefault(int(flat[i]), set()).add(flat[i + 1].decode())
        return found
