"""A call from its start to its end: ``calls.start``, ``accept``, ``reject``, ``cancel``,
``hangup``, and the server's own transitions (connect, time out, disconnect).

The driver around the pure state machine (:mod:`signalling.rules`). A call's state
lives in its PostgreSQL row, so any instance can change any call:

- every change is one transaction: the row is locked, :func:`rules.decide` decides, the
  row and a trail entry (:class:`signalling.ledger.CallLedger`) are written with both
  parties' events (the outbox, :mod:`kernel.outbox`); after the commit the events go
  out live and the trail entry is streamed to admins;
- a start locks both users (advisory locks) before its busy, rate and per-instance
  checks, so two starts cannot both see a user free.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

from kernel.clock import Clock
from kernel.devices import Devices
from kernel.errors import (
    Conflict,
    Forbidden,
    NotFound,
    Overloaded,
    PaymentRequired,
    RateLimited,
    StateConflict,
    Unprocessable,
)
from kernel.outbox import Outbox, StagedEvents
from kernel.rpc.registry import Caller
from signalling import events, ice, rules
from signalling.ledger import CallLedger
from signalling.metrics import CallMetrics
from signalling.models import (
    AnsweredElsewhere,
    CallChange,
    CallIncoming,
    CallStarted,
    CallStep,
    CallView,
    IceServerModel,
    RejectCall,
    StartCall,
)
from signalling.ports import MediaPath
from signalling.rules import Action, Actor, CallState, Transition
from signalling.settings import CallSettings
from signalling.views import actor_of, changes, event_data, masked, view
from storage import calls
from storage.calls import BookingParties, CallRow
from storage.database import Database
from storage.events import Executor


class CallLifecycle:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        devices: Devices,
        ledger: CallLedger,
        clock: Clock,
        settings: CallSettings,
        metrics: CallMetrics,
        *,
        in_calls: set[str],
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._outbox = outbox
        self._devices = devices
        self._ledger = ledger
        self._clock = clock
        self._settings = settings
        self._metrics = metrics
        # Addresses of this instance's sockets that are a party's device in a call
        # (:class:`signalling.presence.CallPresence` starts their grace when they close).
        self._in_calls = in_calls
        self._wall = wall  # Unix time for TURN credentials' expiry
        self.media: MediaPath | None = None  # recorded calls (None: media_unavailable)
        self.policy = ice.Policy(settings.effective_policy)

    # --- Starting ----------------------------------------------------------------------

    async def start(self, caller: Caller, params: StartCall) -> CallStarted:
        """Call the other party of one of your bookings; their every device rings."""
        user_id = caller.require_user()
        recorded = params.media == "recorded"
        if recorded and (self.media is None or not self.media.enabled):
            raise Unprocessable(
                "recorded calls are not available on this server: use media direct",
                reason="media_unavailable",
                field="media",
            )
        s = self._settings
        now = self._clock.now()
        address = self._devices.address(caller.connection_id)
        instance = self._devices.instance_id
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
            await calls.lock_instance(conn, instance)
            if await calls.active_on_instance(conn, instance) >= s.max_active_per_instance:
                self._metrics.calls_refused.labels("instance_full").inc()
                raise Overloaded(
                    "too many calls in progress on this server; try again",
                    reason="calls_full",
                    limit=s.max_active_per_instance,
                )
            if recorded:
                await self._check_media_capacity(conn, instance)
            row = await calls.insert_call(
                conn,
                booking_id=booking.id,
                caller_id=user_id,
                callee_id=callee_id,
                caller_side=side,
                media=params.media,
                policy=self.policy.value,
                caller_device=address,
                instance_id=instance,
                ring_deadline=now + timedelta(seconds=s.ring_timeout),
                now=now,
            )
            entry = await self._ledger.write(
                conn, row.id, "ringing", Actor.CALLER, event_data(row, now), now
            )
            ring_ms = int(s.ring_timeout * 1000)
            staged.add(
                callee_id,
                events.CALL_INCOMING,
                CallIncoming(
                    call_id=row.id,
                    booking_id=booking.id,
                    media=params.media,
                    from_=masked(row.caller_name, side),
                    ice_servers=self.ice_servers(callee_id),
                    policy=self.policy.value,
                    ring_timeout_ms=ring_ms,
                    recording_notice=self._notice(params.media),
                ),
                # Due at once: a callee whose app is closed must still ring
                # (signalling/push.py renders it).
                push_after=0.0,
                now=now,
            )
            staged.add(user_id, events.CALL_RINGING, CallChange(call=view(row, user_id, now)))
            answer = CallStarted(
                call_id=row.id,
                ice_servers=self.ice_servers(user_id),
                policy=self.policy.value,
                ring_timeout_ms=ring_ms,
                recording_notice=self._notice(params.media),
            )
            staged.answer(answer)
            await staged.write(conn)
        self._in_calls.add(address)
        await staged.deliver()
        await self._ledger.announce(entry)
        self._metrics.calls_started.inc()
        return answer

    def _notice(self, media: str) -> bool:
        return media == "recorded" and self.media is not None and self.media.notice

    async def _check_media_capacity(self, conn: Executor, instance: str) -> None:
        assert self.media is not None
        limit = self.media.max_calls
        if await self.media.open_calls(conn, instance) >= limit:
            self._metrics.calls_refused.labels("recordings_full").inc()
            raise Overloaded(
                "too many recorded calls in progress on this server; try again",
                reason="recordings_full",
                limit=limit,
            )

    def _check_may_call(self, booking: BookingParties, side: str) -> None:
        customer = side == "customer"
        context = rules.CallContext(
            booking_status=booking.status,
            caller_is_party=True,
            callee_exists=(booking.provider_ok if customer else booking.customer_ok)
            and (booking.provider_id if customer else booking.customer_id) is not None,
            registration_active=booking.registration_active,
            caller_verified=booking.customer_verified if customer else booking.provider_verified,
            callee_verified=booking.provider_verified if customer else booking.customer_verified,
            access_missing=customer
            and booking.requires_labour_access
            and not booking.customer_labour_access,
        )
        refused = rules.refusal(context, self._settings.booking_statuses)
        if refused is not None:
            self._metrics.calls_refused.labels(refused).inc()
            message = rules.REFUSALS[refused]
            if refused == "labour_access_required":
                raise PaymentRequired(
                    message, product="labourAccess", reason=refused, bookingId=booking.id
                )
            raise Unprocessable(message, reason=refused, bookingId=booking.id)

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

    def ice_servers(self, user_id: int) -> list[IceServerModel]:
        """STUN and TURN servers for one user, with fresh TURN credentials."""
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
        answer = await self.change(user_id, params.call_id, Action.ACCEPT, device=address)
        self._in_calls.add(address)
        await self._devices.send_to_others(
            user_id, address, events.ANSWERED_ELSEWHERE, AnsweredElsewhere(call_id=params.call_id)
        )
        return answer

    async def reject(self, caller: Caller, params: RejectCall) -> CallView:
        """Decline a ringing call (the caller sees reason rejected)."""
        return await self.change(caller.require_user(), params.call_id, Action.REJECT)

    async def cancel(self, caller: Caller, params: CallStep) -> CallView:
        """Stop your own call before it is answered."""
        return await self.change(caller.require_user(), params.call_id, Action.CANCEL)

    async def hangup(self, caller: Caller, params: CallStep) -> CallView:
        """End an answered call (either party)."""
        return await self.change(caller.require_user(), params.call_id, Action.HANGUP)

    async def connect(self, call_id: int) -> None:
        """Both parties' media flows (an answer relayed, or the media path connected)."""
        try:
            await self.change(None, call_id, Action.CONNECT)
        except StateConflict:
            pass  # another answer (or an end) got there first

    async def change(
        self, user_id: int | None, call_id: int, action: Action, *, device: str | None = None
    ) -> CallView:
        """One transition: ``user_id`` None is the server (timeouts, graces, connect)."""
        now = self._clock.now()
        staged = self._outbox.stage()
        async with self._db.transaction() as conn:
            row = await calls.get_call(conn, call_id, lock=True)
            actor = Actor.SERVER if user_id is None else actor_of(row, user_id)
            if row is None or actor is None:
                raise NotFound("no such call", field="callId")
            transition = self._decide(row, actor, action)
            row = await calls.update_call(conn, call_id, **changes(transition, now, device))
            entry = await self._ledger.write(
                conn, call_id, transition.after.value, actor, event_data(row, now), now
            )
            self._stage(staged, row, transition, now)
            answer = view(row, user_id, now) if user_id is not None else None
            if answer is not None:
                staged.answer(answer)
            await staged.write(conn)
        await staged.deliver()
        await self._ledger.announce(entry)
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
        spec = events.TRANSITION_EVENTS[t.event]
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
            staged.add(user_id, spec, change, push_after=0.0 if missed else None, now=now)
