"""Parties' devices coming and going: a dropped socket's reconnect grace, ``calls.resume``,
and the sweep that ends calls whose ringing deadline or grace passed.

Every instance sweeps (:meth:`CallPresence.sweep`): a call started on an instance that
died still ends. A party whose instance was killed before it could record the drop has
no socket on any instance: :meth:`CallPresence.check_presence` starts its grace.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from kernel.clock import Clock
from kernel.devices import Devices
from kernel.errors import NotFound, StateConflict
from kernel.rpc.registry import Caller
from kernel.sockets import LocalSocket
from signalling import ice, rules
from signalling.ledger import CallLedger
from signalling.lifecycle import CallLifecycle
from signalling.models import CallRef, Resumed
from signalling.ports import CallNote
from signalling.rules import Action, Actor, CallState
from signalling.settings import CallSettings
from signalling.views import actor_of, view
from storage import calls
from storage.database import Database

log = logging.getLogger("rtc.calls")

_SWEEP_BATCH = 100
_PRESENCE_BATCH = 5000


class CallPresence:
    def __init__(
        self,
        db: Database,
        devices: Devices,
        lifecycle: CallLifecycle,
        ledger: CallLedger,
        clock: Clock,
        settings: CallSettings,
        *,
        in_calls: set[str],
        online: Callable[[set[int]], Awaitable[set[int]]],
    ) -> None:
        self._db = db
        self._devices = devices
        self._lifecycle = lifecycle
        self._ledger = ledger
        self._clock = clock
        self._settings = settings
        self._in_calls = in_calls  # this instance's sockets that are a party's device
        self._online = online  # which users have a socket on any instance (Bus.online)
        self._tasks: set[asyncio.Task[None]] = set()
        devices.on_closed(self._socket_closed)

    async def resume(self, caller: Caller, params: CallRef) -> Resumed:
        """Make this socket your device in a call (after a reconnect); fresh ICE servers."""
        user_id = caller.require_user()
        address = self._devices.address(caller.connection_id)
        now = self._clock.now()
        async with self._db.transaction() as conn:
            row = await calls.get_call(conn, params.call_id, lock=True)
            actor = actor_of(row, user_id)
            if row is None or actor is None:
                raise NotFound("no such call", field="callId")
            state = CallState(row.state)
            if state not in rules.ACTIVE or (actor is Actor.CALLEE and state is CallState.RINGING):
                raise StateConflict(
                    f"the call is {state.value}: there is nothing to resume",
                    callId=row.id,
                    status=state.value,
                    action="resume",
                )
            if actor is Actor.CALLER:
                row = await calls.update_call(
                    conn, row.id, caller_device=address, caller_lost_at=None
                )
            else:
                row = await calls.update_call(
                    conn, row.id, callee_device=address, callee_lost_at=None
                )
            entry = await self._ledger.write(conn, row.id, "resumed", actor, {}, now)
        self._in_calls.add(address)
        await self._ledger.announce(entry)
        return Resumed(
            call=view(row, user_id, now),
            ice_servers=self._lifecycle.ice_servers(user_id),
            policy=ice.Policy(row.policy).value,
        )

    def _socket_closed(self, socket: LocalSocket, address: str) -> None:
        if address in self._in_calls and socket.user_id is not None:
            self._in_calls.discard(address)
            self._spawn(self._device_lost(socket.user_id, address))

    async def _device_lost(self, user_id: int, address: str) -> None:
        """A party's socket closed: its calls' reconnect grace starts now."""
        now = self._clock.now()
        entries: list[CallNote] = []
        async with self._db.transaction() as conn:
            for call_id, party in await calls.calls_of_device(conn, user_id, address):
                if await calls.mark_lost(conn, call_id, party, now):
                    entries.append(
                        await self._ledger.write(conn, call_id, "dropped", party, {}, now)
                    )
        for entry in entries:
            await self._ledger.announce(entry)
        if entries and self._settings.reconnect_grace == 0:
            await self.sweep()

    async def sweep(self) -> int:
        """End the calls whose ringing deadline or reconnect grace passed; how many."""
        now = self._clock.now()
        due = await calls.due(self._db, now, self._settings.reconnect_grace, _SWEEP_BATCH)
        ended = 0
        for call_id, action in due:
            try:
                await self._lifecycle.change(None, call_id, Action(action))
                ended += 1
            except (StateConflict, NotFound):
                pass  # another instance's sweep, or the parties, got there first
        return ended

    async def check_presence(self) -> int:
        """Start the grace of call parties with no socket on any instance (their
        instance was killed before it recorded the drop); how many."""
        present = await calls.parties_present(self._db, _PRESENCE_BATCH)
        if not present:
            return 0
        online = await self._online({user_id for _, _, user_id in present})
        now = self._clock.now()
        entries: list[CallNote] = []
        async with self._db.transaction() as conn:
            for call_id, party, user_id in present:
                if user_id not in online and await calls.mark_lost(conn, call_id, party, now):
                    data = {"why": "no socket on any instance"}
                    entries.append(
                        await self._ledger.write(conn, call_id, "dropped", party, data, now)
                    )
        for entry in entries:
            await self._ledger.announce(entry)
        return len(entries)

    async def run_sweeps(self) -> None:
        """Sweep every ``sweep_interval`` seconds, check presence every
        ``presence_check_interval``, until cancelled."""
        checked = time.monotonic()
        while True:
            await asyncio.sleep(self._settings.sweep_interval)
            try:
                if time.monotonic() - checked >= self._settings.presence_check_interval:
                    checked = time.monotonic()
                    await self.check_presence()
                await self.sweep()
            except Exception:  # noqa: BLE001 - the next sweep tries again
                log.exception("call sweep failed")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)

    async def close(self, timeout: float = 5.0) -> None:
        """Let the recording of dropped sockets finish (a stopping instance's sockets
        start their calls' grace, so another instance ends or resumes those calls),
        then cancel what is left."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("call task failed", exc_info=task.exception())
