"""Masked calls (methods ``calls.*`` and ``admin.calls.*``; events ``call.*``).

The driver around the pure state machine (:mod:`signalling.rules`). A call's state
lives in its PostgreSQL row, so any instance can change any call:

- every change is one transaction: the row is locked, :func:`rules.decide` decides, the
  row and a ``call_events`` row are written with both parties' events (the outbox,
  :mod:`kernel.outbox`); after the commit the events go out live, and the call
  event is published to every instance's admin watchers;
- a start locks both users (advisory locks) before its busy, rate and per-instance
  checks, so two starts cannot both see a user free;
- every instance sweeps for calls whose ringing deadline or reconnect grace passed
  (:meth:`CallService.sweep`): a call started on an instance that died still ends.

Signalling (offers, answers, ICE candidates) is not durable: it goes from the sending
party's device to the other party's device only (:class:`kernel.devices.Devices`),
filtered for address privacy by :mod:`signalling.ice`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from kernel.bus import Signal
from kernel.clock import Clock
from kernel.devices import Devices
from kernel.errors import (
    Conflict,
    Forbidden,
    NotFound,
    Overloaded,
    RateLimited,
    StateConflict,
    Unprocessable,
)
from kernel.outbox import Outbox, StagedEvents
from kernel.rpc.cursors import decode_cursor, next_cursor
from kernel.rpc.registry import Access, Caller, MethodRegistry
from kernel.rpc.text import invalid
from kernel.signals import Signals
from kernel.sockets import LocalSocket
from rtc_server.config import CallSettings
from rtc_server.metrics import Metrics
from signalling import ice, rules
from signalling.models import (
    AdminActiveCalls,
    AdminCall,
    AdminCallDetail,
    AdminCallEvent,
    AdminCallPage,
    AdminWatching,
    AnsweredElsewhere,
    CallChange,
    CallHistory,
    CallIncoming,
    CallPage,
    CallRef,
    CallSignal,
    CallStarted,
    CallStep,
    CallView,
    IceServerModel,
    MaskedParty,
    RejectCall,
    Relayed,
    Resumed,
    SignalParams,
    StartCall,
    WatchCalls,
)
from signalling.rules import Action, Actor, CallState, Transition
from storage import calls, recordings
from storage.calls import CallEventRow, CallRow
from storage.database import Database
from storage.events import Executor

log = logging.getLogger("rtc.calls")


class MediaPath(Protocol):
    """The server's own media path for recorded calls (``recordings.host.MediaHost``,
    wired by the composition root): it answers each party's offer, forwards the audio
    and records it, on the instance the call was started on."""

    @property
    def enabled(self) -> bool: ...

    @property
    def notice(self) -> bool: ...

    @property
    def max_calls(self) -> int: ...

    async def signal(
        self,
        *,
        call_id: int,
        instance_id: str,
        leg: str,
        user_id: int,
        device: str,
        description: dict[str, str] | None,
        candidate: dict[str, Any] | None,
    ) -> None:
        """Take a party's offer (answered with ``call.signal`` to ``device``) or ICE
        candidate for the call's media on ``instance_id``."""


PARTIES = frozenset({"customer", "provider"})
ADMIN_EVENT_TOPIC = "calls.event"
_SWEEP_BATCH = 100
_ADMIN_REPLAY_MAX = 1000
_ACTIVE_LIST_MAX = 500
_PRESENCE_BATCH = 5000


class CallService:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        devices: Devices,
        signals: Signals,
        clock: Clock,
        settings: CallSettings,
        metrics: Metrics,
        *,
        online: Callable[[set[int]], Awaitable[set[int]]],
        media: MediaPath | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._outbox = outbox
        self._devices = devices
        self._signals = signals
        self._clock = clock
        self._settings = settings
        self._metrics = metrics
        self._wall = wall  # Unix time for TURN credentials' expiry
        self._online = online  # which users have a socket on any instance (Bus.online)
        self._media = media  # recorded calls (None: refused as media_unavailable)
        # Told every call event of the platform (the media path finishes ended calls).
        self._event_listeners: list[Callable[[dict[str, Any]], None]] = []
        self.policy = ice.Policy(settings.effective_policy)
        # Sockets of this instance that are a party's device in a call: when one
        # closes, its calls start their reconnect grace.
        self._call_devices: set[str] = set()
        # Admin sockets of this instance watching every call event: address -> user,
        # and the events that arrived while their replay was being read.
        self._watchers: dict[str, int] = {}
        self._buffering: dict[str, list[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        signals.subscribe(ADMIN_EVENT_TOPIC, self._admin_event)
        devices.on_closed(self._socket_closed)

    def register(self, registry: MethodRegistry) -> None:
        add = registry.add
        add("calls.start", self.start, params=StartCall, result=CallStarted, roles=PARTIES)
        add("calls.accept", self.accept, params=CallStep, result=CallView, roles=PARTIES)
        add("calls.reject", self.reject, params=RejectCall, result=CallView, roles=PARTIES)
        add("calls.cancel", self.cancel, params=CallStep, result=CallView, roles=PARTIES)
        add("calls.hangup", self.hangup, params=CallStep, result=CallView, roles=PARTIES)
        add("calls.signal", self.signal, params=SignalParams, result=Relayed, roles=PARTIES)
        add("calls.resume", self.resume, params=CallRef, result=Resumed, roles=PARTIES)
        add("calls.history", self.history, params=CallHistory, result=CallPage, roles=PARTIES)
        admin = Access.ADMIN
        add("admin.calls.watch", self.watch, params=WatchCalls, result=AdminWatching, access=admin)
        add(
            "admin.calls.unwatch",
            self.unwatch,
            params=WatchCalls,
            result=AdminWatching,
            access=admin,
        )
        add(
            "admin.calls.active",
            self.active,
            params=WatchCalls,
            result=AdminActiveCalls,
            access=admin,
        )
        add(
            "admin.calls.list",
            self.list_all,
            params=CallHistory,
            result=AdminCallPage,
            access=admin,
        )
        add("admin.calls.get", self.get, params=CallRef, result=AdminCallDetail, access=admin)
        event = registry.add_event
        event("call.incoming", CallIncoming, "to every device of the callee: a call is ringing")
        event("call.ringing", CallChange, "to the caller's devices: your call is ringing")
        event("call.accepted", CallChange, "to both parties: the callee answered")
        event("call.connected", CallChange, "to both parties: offer and answer exchanged")
        event("call.ended", CallChange, "to both parties: the call ended (reason, duration)")
        event(
            "call.answeredElsewhere",
            AnsweredElsewhere,
            "to the callee's other sockets: another device answered (live only, no seq)",
            logged=False,
        )
        event(
            "call.signal",
            CallSignal,
            "to the other party's device in the call: an offer, answer or candidate "
            "(live only, no seq)",
            logged=False,
        )
        event(
            "admin.call.event",
            AdminCallEvent,
            "to watching admin sockets: a call event anywhere on the platform (live only)",
            logged=False,
        )

    # --- Starting ----------------------------------------------------------------------

    async def start(self, caller: Caller, params: StartCall) -> CallStarted:
        """Call the other party of one of your bookings; their every device rings."""
        user_id = caller.require_user()
        recorded = params.media == "recorded"
        if recorded and (self._media is None or not self._media.enabled):
            raise Unprocessable(
                "recorded calls are not available on this server: use media direct",
                reason="media_unavailable",
                field="media",
            )
        s = self._settings
        now = self._clock.now()
        address = self._devices.address(caller.connection_id)
        staged = self._outbox.stage()
        async with self._db.transaction() as conn:
            booking = await calls.booking_parties(conn, params.booking_id, now)
            side = "customer" if caller.role == "customer" else "provider"
            if booking is None or user_id != (
                booking.customer_id if side == "customer" else booking.provider_id
            ):
                raise NotFound("no such booking", field="bookingId")
            callee_side = "provider" if side == "customer" else "customer"
            callee_id = booking.provider_id if side == "customer" else booking.customer_id
            self._check_may_call(booking, side)
            assert callee_id is not None  # checked: callee_gone
            await calls.lock_users(conn, [user_id, callee_id])
            await self._check_rate(conn, user_id, now)
            await self._check_busy(conn, user_id, side, callee_id, callee_side)
            await calls.lock_instance(conn, self._devices.instance_id)
            if await calls.active_on_instance(conn, self._devices.instance_id) >= (
                s.max_active_per_instance
            ):
                self._metrics.calls_refused.labels("instance_full").inc()
                raise Overloaded(
                    "too many calls in progress on this server; try again",
                    reason="calls_full",
                    limit=s.max_active_per_instance,
                )
            if recorded:
                await self._check_media_capacity(conn)
            row = await calls.insert_call(
                conn,
                booking_id=booking.id,
                caller_id=user_id,
                callee_id=callee_id,
                caller_side=side,
                media=params.media,
                policy=self.policy.value,
                caller_device=address,
                instance_id=self._devices.instance_id,
                ring_deadline=now + timedelta(seconds=s.ring_timeout),
                now=now,
            )
            event = await calls.insert_event(
                conn, row.id, "ringing", Actor.CALLER, _event_data(row, now), now
            )
            ring_ms = int(s.ring_timeout * 1000)
            staged.add(
                callee_id,
                "call.incoming",
                CallIncoming(
                    call_id=row.id,
                    booking_id=booking.id,
                    media=params.media,
                    from_=_masked(row.caller_name, side),
                    ice_servers=self._ice_servers(callee_id),
                    policy=self.policy.value,
                    ring_timeout_ms=ring_ms,
                    recording_notice=self._notice(params.media),
                ),
                # Due at once: a callee whose app is closed must still ring
                # (signalling/push.py renders it).
                push_after=0.0,
                now=now,
            )
            staged.add(user_id, "call.ringing", CallChange(call=view(row, user_id, now)))
            answer = CallStarted(
                call_id=row.id,
                ice_servers=self._ice_servers(user_id),
                policy=self.policy.value,
                ring_timeout_ms=ring_ms,
                recording_notice=self._notice(params.media),
            )
            staged.answer(answer)
            await staged.write(conn)
        self._call_devices.add(address)
        await self._after_commit(staged, event)
        self._metrics.calls_started.inc()
        return answer

    def _notice(self, media: str) -> bool:
        return media == "recorded" and self._media is not None and self._media.notice

    async def _check_media_capacity(self, conn: Executor) -> None:
        assert self._media is not None
        limit = self._media.max_calls
        if await recordings.open_of_instance(conn, self._devices.instance_id) >= limit:
            self._metrics.calls_refused.labels("recordings_full").inc()
            raise Overloaded(
                "too many recorded calls in progress on this server; try again",
                reason="recordings_full",
                limit=limit,
            )

    def _check_may_call(self, booking: calls.BookingParties, side: str) -> None:
        customer = side == "customer"
        context = rules.CallContext(
            booking_status=booking.status,
            caller_is_party=True,
            callee_exists=(booking.provider_ok if customer else booking.customer_ok)
            and (booking.provider_id if customer else booking.customer_id) is not None,
            registration_active=booking.registration_active,
            caller_verified=booking.customer_verified if customer else booking.provider_verified,
            callee_verified=booking.provider_verified if customer else booking.customer_verified,
        )
        refused = rules.refusal(context, self._settings.booking_statuses)
        if refused is not None:
            self._metrics.calls_refused.labels(refused).inc()
            raise Unprocessable(rules.REFUSALS[refused], reason=refused, bookingId=booking.id)

    async def _check_rate(self, conn: Executor, user_id: int, now: datetime) -> None:
        limit = self._settings.max_starts_per_minute
        count, oldest = await calls.recent_starts(conn, user_id, now - timedelta(seconds=60))
        if count >= limit and oldest is not None:
            self._metrics.calls_refused.labels("rate").inc()
            wait = (oldest + timedelta(seconds=60) - now).total_seconds()
            raise RateLimited(
                f"at most {limit} calls per minute",
                retry_after=max(wait, 0.001),
                reason="calls_per_minute",
                limit=limit,
            )

    async def _check_busy(
        self, conn: Executor, user_id: int, side: str, callee_id: int, callee_side: str
    ) -> None:
        roles = self._settings.busy_roles
        in_calls = await calls.users_in_calls(conn, [user_id, callee_id])
        if callee_id in in_calls and callee_side in roles:
            self._metrics.calls_refused.labels("busy").inc()
            raise Conflict("the other party is in another call", reason="busy")
        if user_id in in_calls and side in roles:
            self._metrics.calls_refused.labels("in_call").inc()
            # Which call: an app that lost track of it (its instance died) can resume
            # or hang it up.
            mine = await calls.active_call_of(conn, user_id)
            raise Conflict("you are in another call: end it first", reason="in_call", callId=mine)

    def _ice_servers(self, user_id: int) -> list[IceServerModel]:
        s = self._settings
        servers = ice.ice_servers(
            stun_urls=s.stun_urls,
            turn_urls=s.turn_urls,
            turn_secret=s.turn_secret,
            user_id=user_id,
            now=self._wall(),
            ttl=s.turn_ttl,
        )
        return [
            IceServerModel(urls=list(x.urls), username=x.username, credential=x.credential)
            for x in servers
        ]

    # --- Changing the state ------------------------------------------------------------

    async def accept(self, caller: Caller, params: CallStep) -> CallView:
        """Answer a ringing call on this device (the first device to accept wins)."""
        address = self._devices.address(caller.connection_id)
        user_id = caller.require_user()
        answer = await self._change(user_id, params.call_id, Action.ACCEPT, device=address)
        self._call_devices.add(address)
        await self._devices.send_to_others(
            user_id,
            address,
            "call.answeredElsewhere",
            {"callId": params.call_id},
        )
        return answer

    async def reject(self, caller: Caller, params: RejectCall) -> CallView:
        """Decline a ringing call (the caller sees reason rejected)."""
        return await self._change(caller.require_user(), params.call_id, Action.REJECT)

    async def cancel(self, caller: Caller, params: CallStep) -> CallView:
        """Stop your own call before it is answered."""
        return await self._change(caller.require_user(), params.call_id, Action.CANCEL)

    async def hangup(self, caller: Caller, params: CallStep) -> CallView:
        """End an answered call (either party)."""
        return await self._change(caller.require_user(), params.call_id, Action.HANGUP)

    async def _change(
        self, user_id: int | None, call_id: int, action: Action, *, device: str | None = None
    ) -> CallView:
        """One transition: ``user_id`` None is the server (timeouts, graces, connect)."""
        now = self._clock.now()
        staged = self._outbox.stage()
        async with self._db.transaction() as conn:
            row = await calls.get_call(conn, call_id, lock=True)
            actor = Actor.SERVER if user_id is None else _actor(row, user_id)
            if row is None or actor is None:
                raise NotFound("no such call", field="callId")
            transition = self._decide(row, actor, action)
            row = await calls.update_call(conn, call_id, **_changes(transition, now, device))
            event = await calls.insert_event(
                conn, call_id, transition.after.value, actor, _event_data(row, now), now
            )
            self._stage(staged, row, transition, now)
            answer = view(row, user_id, now) if user_id is not None else None
            if answer is not None:
                staged.answer(answer)
            await staged.write(conn)
        await self._after_commit(staged, event)
        self._metrics.call_transitions.labels(action.value).inc()
        return answer if answer is not None else view(row, row.caller_id, now)

    def _decide(self, row: CallRow, actor: Actor, action: Action) -> Transition:
        state = CallState(row.state)
        try:
            return rules.decide(state, actor, action)
        except rules.TransitionRefused as refused:
            if refused.reason == "wrong_actor":
                who = "the caller" if actor is Actor.CALLEE else "the callee"
                raise Forbidden(f"only {who} may {action.value} this call") from None
            raise StateConflict(
                f"the call is {state.value}: it cannot be {action.value}ed now",
                callId=row.id,
                status=state.value,
                action=action.value,
            ) from None

    def _stage(self, staged: StagedEvents, row: CallRow, t: Transition, now: datetime) -> None:
        for party, user_id in ((Actor.CALLER, row.caller_id), (Actor.CALLEE, row.callee_id)):
            if user_id is None:  # the account is gone
                continue
            ended_by = None
            if t.after is CallState.ENDED:
                ended_by = (
                    "server"
                    if t.actor is Actor.SERVER
                    else ("you" if t.actor is party else "other")
                )
            change = CallChange(call=view(row, user_id, now), ended_by=ended_by)
            # A missed call is also due for a push to the callee (push_intents): the
            # push sender tells an offline callee who called.
            missed = t.reason is rules.EndReason.MISSED and party is Actor.CALLEE
            staged.add(user_id, t.event, change, push_after=0.0 if missed else None, now=now)

    async def _after_commit(self, staged: StagedEvents | None, event: CallEventRow) -> None:
        if staged is not None:
            await staged.deliver()
        try:
            await self._signals.publish(ADMIN_EVENT_TOPIC, _admin_event_json(event))
        except Exception:  # noqa: BLE001 - admins' live view only; the trail is stored
            log.exception("could not publish a call event to admins")

    # --- Signalling --------------------------------------------------------------------

    async def signal(self, caller: Caller, params: SignalParams) -> Relayed:
        """Relay an offer, answer or ICE candidate to the other party's device."""
        user_id = caller.require_user()
        row = await calls.signal_route(self._db, params.call_id)
        actor = _actor(row, user_id)
        if row is None or actor is None:
            raise NotFound("no such call", field="callId")
        state = CallState(row.state)
        if not rules.may_signal(state):
            raise StateConflict(
                f"the call is {state.value}: signalling needs an answered call",
                callId=row.id,
                status=state.value,
                action="signal",
            )
        mine = row.caller_device if actor is Actor.CALLER else row.callee_device
        if mine != self._devices.address(caller.connection_id):
            raise Forbidden(
                "this socket is not your device in the call (calls.resume moves it here)",
                reason="not_call_device",
            )
        if row.media == "recorded":
            return await self._to_media(row, actor, user_id, mine, params)
        policy = ice.Policy(row.policy)
        relayed: dict[str, Any] = {"callId": row.id}
        if params.description is not None:
            description = params.description
            if len(description.sdp.encode()) > self._settings.max_sdp_bytes:
                raise invalid(("description.sdp", f"at most {self._settings.max_sdp_bytes} bytes"))
            relayed["description"] = {
                "type": description.type,
                "sdp": ice.filter_sdp(description.sdp, policy),
            }
        else:
            assert params.candidate is not None
            candidate = params.candidate
            if candidate.candidate and ice.candidate_type(candidate.candidate) is None:
                raise invalid(("candidate.candidate", "not an ICE candidate (RFC 8839 5.1)"))
            if candidate.candidate and not ice.relayable_candidate(candidate.candidate, policy):
                self._metrics.call_signals.labels("dropped").inc()
                return Relayed(
                    relayed=False,
                    dropped="relay-only: only TURN relay candidates are relayed",
                )
            relayed["candidate"] = candidate.model_dump(by_alias=True, exclude_none=True)
            if policy is ice.Policy.RELAY_ONLY:
                relayed["candidate"]["candidate"] = ice.private_candidate(candidate.candidate)
        other_id = row.callee_id if actor is Actor.CALLER else row.caller_id
        other_device = row.callee_device if actor is Actor.CALLER else row.caller_device
        if other_id is not None and other_device is not None:
            await self._devices.send(other_id, other_device, "call.signal", relayed)
        self._metrics.call_signals.labels("relayed").inc()
        if (
            params.description is not None
            and params.description.type == "answer"
            and state is CallState.ACCEPTED
        ):
            await self._connect(row.id)
        return Relayed(relayed=True)

    async def _to_media(
        self,
        row: calls.SignalRoute,
        actor: Actor,
        user_id: int,
        device: str,
        params: SignalParams,
    ) -> Relayed:
        """Recorded calls: each party offers to the server, which answers with
        ``call.signal`` (from the instance carrying the call's media)."""
        if self._media is None:
            raise Unprocessable(
                "recorded calls are not available on this server",
                reason="media_unavailable",
            )
        description = None
        if params.description is not None:
            if params.description.type != "offer":
                raise invalid(
                    ("description.type", "in a recorded call each party offers; the server answers")
                )
            if len(params.description.sdp.encode()) > self._settings.max_sdp_bytes:
                raise invalid(("description.sdp", f"at most {self._settings.max_sdp_bytes} bytes"))
            description = {"type": "offer", "sdp": params.description.sdp}
        candidate = None
        if params.candidate is not None:
            c = params.candidate
            if c.candidate and ice.candidate_type(c.candidate) is None:
                raise invalid(("candidate.candidate", "not an ICE candidate (RFC 8839 5.1)"))
            candidate = c.model_dump(by_alias=True, exclude_none=True)
        await self._media.signal(
            call_id=row.id,
            instance_id=row.instance_id,
            leg=actor.value,
            user_id=user_id,
            device=device,
            description=description,
            candidate=candidate,
        )
        self._metrics.call_signals.labels("to_media").inc()
        return Relayed(relayed=True)

    async def connect_call(self, call_id: int) -> None:
        """The media path connected both parties of a recorded call."""
        await self._connect(call_id)

    async def publish_event(self, event: CallEventRow) -> None:
        """Stream a call event written by another component (recordings) to admins."""
        await self._after_commit(None, event)

    def on_event(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Run ``listener(data)`` (plain, quick) for every call event of the platform, as
        admins see it (``admin.call.event``), on this instance."""
        self._event_listeners.append(listener)

    async def _connect(self, call_id: int) -> None:
        try:
            await self._change(None, call_id, Action.CONNECT)
        except StateConflict:
            pass  # another answer (or an end) got there first

    # --- Dropped sockets and their return ----------------------------------------------

    async def resume(self, caller: Caller, params: CallRef) -> Resumed:
        """Make this socket your device in a call (after a reconnect); fresh ICE servers."""
        user_id = caller.require_user()
        address = self._devices.address(caller.connection_id)
        now = self._clock.now()
        async with self._db.transaction() as conn:
            row = await calls.get_call(conn, params.call_id, lock=True)
            actor = _actor(row, user_id)
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
            event = await calls.insert_event(conn, row.id, "resumed", actor, {}, now)
        self._call_devices.add(address)
        await self._after_commit(None, event)
        return Resumed(
            call=view(row, user_id, now),
            ice_servers=self._ice_servers(user_id),
            policy=ice.Policy(row.policy).value,
        )

    def _socket_closed(self, conn: LocalSocket, address: str) -> None:
        self._watchers.pop(address, None)
        self._buffering.pop(address, None)
        if address in self._call_devices and conn.user_id is not None:
            self._call_devices.discard(address)
            self._spawn(self._device_lost(conn.user_id, address))

    async def _device_lost(self, user_id: int, address: str) -> None:
        """A party's socket closed: its calls' reconnect grace starts now."""
        now = self._clock.now()
        events = []
        async with self._db.transaction() as conn:
            for call_id, party in await calls.calls_of_device(conn, user_id, address):
                if await calls.mark_lost(conn, call_id, party, now):
                    events.append(
                        await calls.insert_event(conn, call_id, "dropped", party, {}, now)
                    )
        for event in events:
            await self._after_commit(None, event)
        if events and self._settings.reconnect_grace == 0:
            await self.sweep()

    # --- The sweep: ringing deadlines and graces, on every instance ----------------------

    async def sweep(self) -> int:
        """End the calls whose ringing deadline or reconnect grace passed; how many."""
        now = self._clock.now()
        due = await calls.due(self._db, now, self._settings.reconnect_grace, _SWEEP_BATCH)
        ended = 0
        for call_id, action in due:
            try:
                await self._change(None, call_id, Action(action))
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
        events = []
        async with self._db.transaction() as conn:
            for call_id, party, user_id in present:
                if user_id not in online and await calls.mark_lost(conn, call_id, party, now):
                    data = {"why": "no socket on any instance"}
                    events.append(
                        await calls.insert_event(conn, call_id, "dropped", party, data, now)
                    )
        for event in events:
            await self._after_commit(None, event)
        return len(events)

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

    # --- Reading -----------------------------------------------------------------------

    async def history(self, caller: Caller, params: CallHistory) -> CallPage:
        """Your calls (made and received), of one booking or all, newest first."""
        user_id = caller.require_user()
        query = ("calls", params.booking_id)
        rows = await calls.history(
            self._db,
            user_id=user_id,
            booking_id=params.booking_id,
            before_id=decode_cursor(params.cursor, query),
            limit=params.limit + 1,
        )
        now = self._clock.now()
        return CallPage(
            calls=[view(r, user_id, now) for r in rows[: params.limit]],
            next_cursor=next_cursor([r.id for r in rows], params.limit, query),
        )

    # --- Admins ------------------------------------------------------------------------

    async def watch(self, caller: Caller, params: WatchCalls) -> AdminWatching:
        """Stream every call event of the platform to this socket (admin.call.event),
        after the last ``calls.admin_replay_minutes`` minutes' events (in the answer)."""
        user_id = caller.require_user()
        address = self._devices.address(caller.connection_id)
        self._watchers[address] = user_id
        self._buffering[address] = []  # live events wait until the replay is answered
        since = self._clock.now() - timedelta(minutes=self._settings.admin_replay_minutes)
        try:
            rows = await calls.events_since(self._db, since, _ADMIN_REPLAY_MAX)
        except BaseException:
            self._watchers.pop(address, None)
            self._buffering.pop(address, None)
            raise
        replayed = [_admin_event(r) for r in rows]
        seen = {r.id for r in rows}
        # Runs right after this answer is written (the dispatcher sends it without
        # awaiting once this returns): what arrived meanwhile follows the replay.
        asyncio.get_running_loop().call_soon(self._go_live, address, user_id, seen)
        return AdminWatching(replayed=replayed)

    def _go_live(self, address: str, user_id: int, seen: set[int]) -> None:
        for data in self._buffering.pop(address, []):
            if data["id"] not in seen:
                self._devices.send_local(user_id, address, "admin.call.event", data)

    async def unwatch(self, caller: Caller, params: WatchCalls) -> AdminWatching:
        """Stop this socket's stream of call events."""
        address = self._devices.address(caller.connection_id)
        self._watchers.pop(address, None)
        self._buffering.pop(address, None)
        return AdminWatching(replayed=[])

    def _admin_event(self, signal: Signal) -> None:
        data = signal.data
        for listener in self._event_listeners:
            try:
                listener(data)
            except Exception:  # noqa: BLE001 - one listener must not stop the others
                log.exception("call event listener failed")
        for address, user_id in list(self._watchers.items()):
            buffer = self._buffering.get(address)
            if buffer is not None:
                buffer.append(data)
            else:
                self._devices.send_local(user_id, address, "admin.call.event", data)

    async def active(self, caller: Caller, params: WatchCalls) -> AdminActiveCalls:
        """Calls in progress on the platform (ringing, accepted, connected), oldest first."""
        rows = await calls.active_calls(self._db, _ACTIVE_LIST_MAX)
        now = self._clock.now()
        return AdminActiveCalls(calls=[admin_view(r, now) for r in rows])

    async def list_all(self, caller: Caller, params: CallHistory) -> AdminCallPage:
        """Every call on the platform (of one booking or all), newest first."""
        query = ("admin.calls", params.booking_id)
        rows = await calls.history(
            self._db,
            user_id=None,
            booking_id=params.booking_id,
            before_id=decode_cursor(params.cursor, query),
            limit=params.limit + 1,
        )
        now = self._clock.now()
        return AdminCallPage(
            calls=[admin_view(r, now) for r in rows[: params.limit]],
            next_cursor=next_cursor([r.id for r in rows], params.limit, query),
        )

    async def get(self, caller: Caller, params: CallRef) -> AdminCallDetail:
        """One call with its full event trail."""
        row = await calls.get_call(self._db, params.call_id)
        if row is None:
            raise NotFound("no such call", field="callId")
        events = await calls.events_of(self._db, row.id)
        return AdminCallDetail(
            call=admin_view(row, self._clock.now()), events=[_admin_event(e) for e in events]
        )

    # --- Tasks -------------------------------------------------------------------------

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


# --- Views -------------------------------------------------------------------------------


def _actor(row: CallRow | calls.SignalRoute | None, user_id: int) -> Actor | None:
    if row is None:
        return None
    if row.caller_id == user_id:
        return Actor.CALLER
    if row.callee_id == user_id:
        return Actor.CALLEE
    return None


def _changes(t: Transition, now: datetime, device: str | None) -> dict[str, Any]:
    changes: dict[str, Any] = {"state": t.after.value}
    if t.action is Action.ACCEPT:
        changes.update(accepted_at=now, callee_device=device)
    elif t.action is Action.CONNECT:
        changes["connected_at"] = now
    if t.after is CallState.ENDED:
        assert t.reason is not None
        changes.update(end_reason=t.reason.value, ended_by=t.actor.value, ended_at=now)
    return changes


def _duration_ms(row: CallRow, now: datetime) -> int:
    if row.accepted_at is None:
        return 0
    return max(0, int(((row.ended_at or now) - row.accepted_at).total_seconds() * 1000))


def _masked(name: str | None, role: str | None) -> MaskedParty:
    side = "provider" if role == "provider" else "customer"
    return MaskedParty(display_name=name or side.capitalize(), role=side)


def view(row: CallRow, user_id: int | None, now: datetime) -> CallView:
    """The call as the party ``user_id`` sees it: the other one masked."""
    outgoing = row.caller_id == user_id
    callee_side = "provider" if row.caller_side == "customer" else "customer"
    other = (
        _masked(row.callee_name, callee_side)
        if outgoing
        else _masked(row.caller_name, row.caller_side)
    )
    return CallView(
        call_id=row.id,
        booking_id=row.booking_id,
        direction="outgoing" if outgoing else "incoming",
        other=other,
        media=row.media,
        state=row.state,
        end_reason=row.end_reason,
        created_at=row.created_at,
        accepted_at=row.accepted_at,
        ended_at=row.ended_at,
        duration_ms=_duration_ms(row, now),
    )


def admin_view(row: CallRow, now: datetime) -> AdminCall:
    return AdminCall(
        call_id=row.id,
        booking_id=row.booking_id,
        caller_id=row.caller_id,
        callee_id=row.callee_id,
        caller_name=row.caller_name,
        callee_name=row.callee_name,
        caller_side=row.caller_side,
        media=row.media,
        policy=row.policy,
        state=row.state,
        end_reason=row.end_reason,
        ended_by=row.ended_by,
        instance_id=row.instance_id,
        created_at=row.created_at,
        accepted_at=row.accepted_at,
        connected_at=row.connected_at,
        ended_at=row.ended_at,
        duration_ms=_duration_ms(row, now),
    )


def _event_data(row: CallRow, now: datetime) -> dict[str, Any]:
    data: dict[str, Any] = {"bookingId": row.booking_id, "state": row.state, "media": row.media}
    if row.end_reason is not None:
        data["reason"] = row.end_reason
        data["durationMs"] = _duration_ms(row, now)
    return data


def _admin_event(event: CallEventRow) -> AdminCallEvent:
    return AdminCallEvent(
        id=event.id,
        call_id=event.call_id,
        event=event.event,
        actor=event.actor,
        data=event.data,
        at=event.created_at,
    )


def _admin_event_json(event: CallEventRow) -> dict[str, object]:
    model = _admin_event(event)
    data: dict[str, object] = model.model_dump(mode="json", by_alias=True)
    return data
