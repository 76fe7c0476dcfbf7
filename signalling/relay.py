"""``calls.signal``: offers, answers and ICE candidates from one party's device to the
other's, or to the server's media path for recorded calls.

Signalling is not durable: it goes from the sending party's device to the other
party's device only (:class:`kernel.devices.Devices`), filtered for address privacy by
:mod:`signalling.ice`.
"""

from __future__ import annotations

from kernel.devices import Devices
from kernel.errors import Forbidden, NotFound, StateConflict, Unprocessable
from kernel.rpc.registry import Caller
from kernel.rpc.text import invalid
from signalling import events, ice, rules
from signalling.lifecycle import CallLifecycle
from signalling.metrics import CallMetrics
from signalling.models import CallSignal, Candidate, Description, Relayed, SignalParams
from signalling.rules import Actor, CallState
from signalling.settings import CallSettings
from signalling.views import actor_of
from storage import calls
from storage.calls import SignalRoute
from storage.database import Database


class SignalRelay:
    def __init__(
        self,
        db: Database,
        devices: Devices,
        lifecycle: CallLifecycle,
        settings: CallSettings,
        metrics: CallMetrics,
    ) -> None:
        self._db = db
        self._devices = devices
        self._lifecycle = lifecycle
        self._settings = settings
        self._metrics = metrics

    async def signal(self, caller: Caller, params: SignalParams) -> Relayed:
        """Relay an offer, answer or ICE candidate to the other party's device."""
        user_id = caller.require_user()
        row = await calls.signal_route(self._db, params.call_id)
        actor = actor_of(row, user_id)
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
        if params.description is not None:
            description = params.description
            self._check_sdp_size(description)
            try:
                sdp = ice.filter_sdp(description.sdp, policy)
            except ValueError as exc:
                raise invalid(("description.sdp", str(exc))) from None
            relayed = CallSignal(
                call_id=row.id, description=Description(type=description.type, sdp=sdp)
            )
        else:
            assert params.candidate is not None
            candidate = _checked(params.candidate)
            if candidate.candidate:
                # Rebuilt under the policy (relay-only: relay candidates only, their
                # related address blanked), never relayed as sent.
                rebuilt = ice.filter_candidate(candidate.candidate, policy)
                if rebuilt is None:
                    self._metrics.call_signals.labels("dropped").inc()
                    return Relayed(
                        relayed=False,
                        dropped="relay-only: only TURN relay candidates are relayed",
                    )
                candidate = candidate.model_copy(update={"candidate": rebuilt})
            relayed = CallSignal(call_id=row.id, candidate=candidate)
        other_id = row.callee_id if actor is Actor.CALLER else row.caller_id
        other_device = row.callee_device if actor is Actor.CALLER else row.caller_device
        if other_id is not None and other_device is not None:
            await self._devices.send(other_id, other_device, events.CALL_SIGNAL, relayed)
        self._metrics.call_signals.labels("relayed").inc()
        if (
            params.description is not None
            and params.description.type == "answer"
            and state is CallState.ACCEPTED
        ):
            await self._lifecycle.connect(row.id)
        return Relayed(relayed=True)

    def _check_sdp_size(self, description: Description) -> None:
        if len(description.sdp.encode()) > self._settings.max_sdp_bytes:
            raise invalid(("description.sdp", f"at most {self._settings.max_sdp_bytes} bytes"))

    async def _to_media(
        self,
        row: SignalRoute,
        actor: Actor,
        user_id: int,
        device: str,
        params: SignalParams,
    ) -> Relayed:
        """Recorded calls: each party offers to the server, which answers with
        ``call.signal`` (from the instance carrying the call's media)."""
        media = self._lifecycle.media
        if media is None:
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
            self._check_sdp_size(params.description)
            description = {"type": "offer", "sdp": params.description.sdp}
        candidate = None
        if params.candidate is not None:
            candidate = _checked(params.candidate).model_dump(by_alias=True, exclude_none=True)
        await media.signal(
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


def _checked(candidate: Candidate) -> Candidate:
    """A trickled candidate whose fields are what they claim to be (invalid params
    otherwise): a candidate line, a media id, an ICE username fragment, none of which
    can then spell an address."""
    if candidate.candidate:
        try:
            ice.parse_candidate(candidate.candidate)
        except ValueError as exc:
            raise invalid(("candidate.candidate", f"not an ICE candidate: {exc}")) from None
    if candidate.sdp_mid is not None and not ice.is_mid(candidate.sdp_mid):
        raise invalid(("candidate.sdpMid", "not a media id (RFC 8843)"))
    if candidate.username_fragment is not None and not ice.is_ice_ufrag(
        candidate.username_fragment
    ):
        raise invalid(("candidate.usernameFragment", "not an ICE ufrag (RFC 8839 5.4)"))
    return candidate
