"""The media of recorded calls on this instance: one :class:`~recordings.media.RecordedCall`
per call, from the first offer to the end of the call, then the files and the events.

A recorded call's media lives on the instance the call was started on (its row's
``instance_id``; the per-instance cap counts them there). Each party offers to the
server with ``calls.signal``; the signalling service hands the offer here
(:meth:`MediaHost.signal`). On this instance it is answered directly; from another
instance it travels as a ``media.signal`` bus signal to the media's instance, which
answers the party's device with ``call.signal`` wherever that socket is
(through :class:`signalling.ports.Calls`), or tells it why not (``call.signal`` with
``error``).

When both legs are answered the call is connected. When the call ends (any instance
may end it: every call event reaches every instance, :meth:`MediaHost.call_event`) the
media stops, both files are flushed and committed to the shared object store (whole or
absent: from then on any instance can mix and serve them), the recording's rows are
written, and a ``recording.ready`` call event goes to admins
(and to the parties when they may download). A leg whose file cannot be written (disk
full) stops recording at once with a ``recording.failed`` event; the call goes on.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from kernel.bus import Signal
from kernel.clock import Clock
from kernel.errors import InvalidParams, NotFound, Unprocessable
from kernel.jobs import JobQueue
from kernel.objects import ObjectStore
from kernel.outbox import Outbox, StagedEvents
from kernel.rpc.text import invalid
from kernel.signals import Signals
from recordings.events import RECORDING_FAILED, RECORDING_READY
from recordings.jobs import MIX, MixRecording
from recordings.media import LEGS, Leg, LegResult, RecordedCall
from recordings.metrics import RecordingMetrics
from recordings.models import RecordingFailed, RecordingReady
from recordings.service import leg_view
from recordings.settings import RecordingSettings
from recordings.store import commit_leg, file_key
from signalling.ports import CallEnded, CallNote, CallParties, Calls, CallSignal, Description
from storage import recordings as store_rows
from storage.database import Database
from storage.errors import StorageError
from storage.events import Executor
from storage.recordings import LegRow

log = logging.getLogger("rtc.recordings")

_TOPIC = "media.signal"


@dataclass(frozen=True, slots=True)
class MediaRequest:
    """A party's offer or ICE candidate for the server's side of a recorded call."""

    call_id: int
    instance_id: str  # the instance carrying the call's media
    leg: Leg
    user_id: int
    device: str  # the party's socket, "<instance>/<connection>"
    description: dict[str, str] | None = None
    candidate: dict[str, Any] | None = None


@dataclass(slots=True)
class _Hosted:
    call_id: int
    recording_id: int
    started_at: datetime
    media: RecordedCall
    keys: dict[Leg, str]
    parties: dict[Leg, int] = field(default_factory=dict)
    answered: set[Leg] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    connected: bool = False


class MediaHost:
    def __init__(
        self,
        db: Database,
        store: ObjectStore,
        outbox: Outbox,
        instance_id: str,
        signals: Signals,
        clock: Clock,
        settings: RecordingSettings,
        metrics: RecordingMetrics,
        *,
        jobs: JobQueue,
        calls: Calls,
    ) -> None:
        self._jobs = jobs  # the mixed file is made by a job (recordings.mix)
        self._db = db
        self.store = store
        self._outbox = outbox
        self._clock = clock
        self._settings = settings
        self._metrics = metrics
        # Seconds between attempts to write a finished recording's rows (its files
        # are stored already): about half a minute of database outage is ridden out.
        self.finish_retry_delays: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
        self._signalling = calls  # the calls whose media this is (through its port)
        self.instance_id = instance_id  # the instance whose media this host carries
        self._calls: dict[int, _Hosted] = {}
        self._opening: dict[int, asyncio.Lock] = {}
        self._finishing: dict[int, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._signals = signals
        signals.subscribe(_TOPIC, self._received)
        calls.on_ended(self._call_ended)
        calls.use_media(self)

    # --- What signalling asks ------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self._settings.enabled

    @property
    def notice(self) -> bool:
        return self._settings.notice

    @property
    def max_calls(self) -> int:
        return self._settings.max_calls_per_instance

    async def open_calls(self, conn: Executor, instance_id: str) -> int:
        """Recorded calls whose media ``instance_id`` carries (a row not finished)."""
        return await store_rows.open_of_instance(conn, instance_id)

    @property
    def hosted(self) -> int:
        """Recorded calls whose media is on this instance now."""
        return len(self._calls)

    def packets(self, call_id: int) -> dict[Leg, int] | None:
        """RTP packets received so far from each party of a call whose media is here."""
        hosted = self._calls.get(call_id)
        return None if hosted is None else hosted.media.packets()

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
        """Take a party's offer or candidate: here, or on the call's media instance."""
        request = MediaRequest(
            call_id, instance_id, _as_leg(leg), user_id, device, description, candidate
        )
        if instance_id == self.instance_id:
            await self._take(request)
            return
        await self._signals.publish(_TOPIC, asdict(request))

    def _received(self, signal: Signal) -> None:
        data = signal.data
        if data.get("instance_id") != self.instance_id:
            return
        request = _request_from(data)
        if request is None:
            log.warning("malformed media signal", extra={"data": str(data)[:200]})
            return
        self._spawn(self._take_remote(request))

    async def _take_remote(self, request: MediaRequest) -> None:
        try:
            await self._take(request)
        except (Unprocessable, NotFound, InvalidParams) as refused:
            await self._signalling.tell_device(
                request.user_id,
                request.device,
                CallSignal(call_id=request.call_id, error=str(refused)),
            )

    async def _take(self, request: MediaRequest) -> None:
        hosted = await self._hosted(request)
        async with hosted.lock:
            hosted.parties[request.leg] = request.user_id
            if request.description is not None:
                try:
                    answer = await hosted.media.answer(request.leg, request.description["sdp"])
                except RuntimeError:  # the call ended while this offer waited
                    raise NotFound("this call's media has ended", field="callId") from None
                except (ValueError, AssertionError, KeyError) as bad:
                    raise Unprocessable(
                        f"the server could not use this offer: {bad}",
                        reason="bad_offer",
                        field="description",
                    ) from None
                await self._signalling.tell_device(
                    request.user_id,
                    request.device,
                    CallSignal(
                        call_id=request.call_id,
                        description=Description(type="answer", sdp=answer),
                    ),
                )
                hosted.answered.add(request.leg)
                if len(hosted.answered) == len(LEGS) and not hosted.connected:
                    hosted.connected = True
                    self._spawn(self._signalling.connected(request.call_id))
            elif request.candidate is not None:
                c = request.candidate
                try:
                    await hosted.media.add_candidate(
                        request.leg,
                        c.get("candidate", ""),
                        c.get("sdpMid"),
                        c.get("sdpMLineIndex"),
                    )
                except ValueError as bad:
                    raise invalid(("candidate", str(bad))) from None

    async def _hosted(self, request: MediaRequest) -> _Hosted:
        hosted = self._calls.get(request.call_id)
        if hosted is not None:
            return hosted
        lock = self._opening.setdefault(request.call_id, asyncio.Lock())
        try:
            async with lock:
                hosted = self._calls.get(request.call_id)
                if hosted is not None:
                    return hosted
                if self._closed or request.call_id in self._finishing:
                    raise NotFound("this call's media has ended", field="callId")
                hosted = await self._open(request.call_id)
                self._calls[request.call_id] = hosted
                self._metrics.recordings_active.set(len(self._calls))
                return hosted
        finally:
            if not lock.locked():
                self._opening.pop(request.call_id, None)

    async def _open(self, call_id: int) -> _Hosted:
        now = self._clock.now()
        async with self._db.transaction() as conn:
            parties = await self._signalling.parties(conn, call_id, lock=True)
            if parties is None or parties.ended:
                raise NotFound("this call has ended", field="callId")
            recording_id = await store_rows.start(conn, call_id, self.instance_id, now)
        keys = {leg: file_key(now, call_id, leg) for leg in LEGS}
        media = RecordedCall(
            call_id,
            leg_path=lambda leg: self.store.temp_path(keys[leg]),
            on_failure=lambda leg, reason: self._spawn(self._leg_failed(call_id, leg, reason)),
            ice_servers=_ice_servers(self._settings.stun_urls),
            max_queue=self._settings.max_queue,
        )
        log.info("recording started", extra={"call": call_id, "recording": recording_id})
        return _Hosted(call_id, recording_id, now, media, keys)

    # --- The end of a call -------------------------------------------------------------------

    def _call_ended(self, ended: CallEnded) -> None:
        """A call ended (on any instance): if its media is here, finish it."""
        if ended.call_id in self._calls:
            self.finish_soon(ended.call_id)

    def finish_soon(self, call_id: int) -> None:
        if call_id not in self._finishing and call_id in self._calls:
            task = asyncio.get_running_loop().create_task(self._finish(call_id))
            self._finishing[call_id] = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(_log_failure)

    async def _finish(self, call_id: int) -> None:
        hosted = self._calls[call_id]
        try:
            try:
                async with hosted.lock:
                    results = await hosted.media.close()
                self._count_packets(hosted.media, results)
            finally:
                self._calls.pop(call_id, None)
                self._metrics.recordings_active.set(len(self._calls))
            await self._write_out(hosted, results)
        finally:
            self._finishing.pop(call_id, None)

    def _count_packets(self, media: RecordedCall, results: dict[Leg, LegResult]) -> None:
        packets = self._metrics.recording_packets
        packets.labels("received").inc(sum(r.packets for r in results.values()))
        packets.labels("lost").inc(sum(r.lost for r in results.values()))
        packets.labels("forwarded").inc(sum(media.forwarded().values()))
        packets.labels("dropped").inc(sum(media.dropped().values()))

    async def _write_out(self, hosted: _Hosted, results: dict[Leg, LegResult]) -> None:
        legs: list[LegRow] = []
        errors: list[str] = []
        for leg in LEGS:
            result = results.get(leg)
            if result is None or result.path is None:
                errors.append(f"{leg}: no audio was received")
                continue
            error = result.error
            try:
                stored = await commit_leg(self.store, result.path, hosted.keys[leg])
            except OSError as failed:  # a full disk, an unreachable bucket
                errors.append(f"{leg}: the file could not be stored ({failed.strerror})")
                self._metrics.recording_failures.inc()
                continue
            if error:
                errors.append(f"{leg}: {error}")
            legs.append(
                LegRow(
                    leg=leg,
                    user_id=hosted.parties.get(leg),
                    storage_key=stored.key,
                    codec=result.codec,
                    bytes=stored.bytes,
                    duration_ms=result.duration_ms,
                    packets=result.packets,
                    lost=result.lost,
                    sha256=stored.sha256,
                    error=error,
                    offset_ms=result.offset_ms,
                )
            )
        duration = max((leg.duration_ms for leg in legs), default=0)
        error_text = "; ".join(errors) or None
        # The files are stored: their rows must follow. A database that is away for
        # a moment (a failover, a restart) is waited for; one that stays away leaves
        # the recording open, to be marked failed, and its files removed at the end
        # of retention (MediaHost never leaves them unaccounted for).
        for delay in (*self.finish_retry_delays, None):
            try:
                finished = await self._record_finish(hosted, legs, error_text, duration)
                break
            except StorageError as failed:
                if delay is None or not failed.retryable:
                    log.error(
                        "recording stored but its rows could not be written: it will be "
                        "marked failed, and its files removed at the end of retention",
                        extra={"call": hosted.call_id, "recording": hosted.recording_id},
                    )
                    self._metrics.recording_failures.inc()
                    raise
                log.warning(
                    "recording rows not written yet: retrying",
                    extra={"call": hosted.call_id, "retry_in": delay},
                )
                await asyncio.sleep(delay)
        if finished is None:
            return
        staged, event = finished
        await staged.deliver()
        self._metrics.recordings_finished.labels("failed" if error_text else "ready").inc()
        log.info(
            "recording finished",
            extra={
                "call": hosted.call_id,
                "recording": hosted.recording_id,
                "duration_ms": duration,
                "error": error_text,
            },
        )
        await self._signalling.announce(event)

    async def _record_finish(
        self, hosted: _Hosted, legs: list[LegRow], error_text: str | None, duration: int
    ) -> tuple[StagedEvents, CallNote] | None:
        """One transaction: the recording's rows, its ready event, the mix job and the
        parties' events. None if the recording was finished already."""
        now = self._clock.now()
        staged = self._outbox.stage()
        async with self._db.transaction() as conn:
            finished = await store_rows.finish(
                conn,
                hosted.recording_id,
                legs=legs,
                error=error_text,
                duration_ms=duration,
                now=now,
            )
            if not finished:
                return None
            parties = await self._signalling.parties(conn, hosted.call_id)
            ready = RecordingReady(
                call_id=hosted.call_id,
                recording_id=hosted.recording_id,
                state="failed" if error_text else "ready",
                error=error_text,
                duration_ms=duration,
                legs=[leg_view(leg) for leg in legs],
            )
            data = ready.model_dump(mode="json", by_alias=True, exclude={"call_id"})
            event = await self._signalling.record(
                conn, hosted.call_id, "recording.ready", data, now
            )
            if len(legs) == len(LEGS):  # both legs in one file, later, off the call path
                await self._jobs.enqueue(
                    MIX, MixRecording(recording_id=hosted.recording_id), conn=conn
                )
            if self._settings.parties_may_download:
                for user_id in _users_of(parties):
                    staged.add(user_id, RECORDING_READY, ready)
            await staged.write(conn)
        return staged, event

    async def _leg_failed(self, call_id: int, leg: Leg, reason: str) -> None:
        """A leg's file could not be written: say so now (the call goes on)."""
        hosted = self._calls.get(call_id)
        if hosted is None:
            return
        self._metrics.recording_failures.inc()
        log.warning("recording leg failed", extra={"call": call_id, "leg": leg, "error": reason})
        now = self._clock.now()
        staged = self._outbox.stage()
        async with self._db.transaction() as conn:
            parties = await self._signalling.parties(conn, call_id)
            event = await self._signalling.record(
                conn,
                call_id,
                "recording.failed",
                {"recordingId": hosted.recording_id, "leg": leg, "error": reason},
                now,
            )
            if self._settings.notice or self._settings.parties_may_download:
                failed = RecordingFailed(
                    call_id=call_id,
                    recording_id=hosted.recording_id,
                    leg=leg,
                    reason=reason,
                )
                for user_id in _users_of(parties):
                    staged.add(user_id, RECORDING_FAILED, failed)
            await staged.write(conn)
        await staged.deliver()
        await self._signalling.announce(event)

    async def reconcile(self) -> int:
        """Finish the hosted calls that ended without this instance hearing of it (a
        lost bus signal); how many."""
        if not self._calls:
            return 0
        ended = await self._signalling.ended_among(list(self._calls))
        for call_id in ended:
            self.finish_soon(call_id)
        return len(ended)

    async def run(self, interval: float = 5.0) -> None:
        """Reconcile every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reconcile()
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("recording reconcile failed")

    async def close(self) -> None:
        """Finish every recording of this instance (the instance is stopping: the
        media cannot move, so what was recorded is kept)."""
        self._closed = True
        for call_id in list(self._calls):
            self.finish_soon(call_id)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)


def _users_of(parties: CallParties | None) -> list[int]:
    """The parties' accounts that still exist."""
    if parties is None:
        return []
    return [u for u in (parties.caller_id, parties.callee_id) if u is not None]


def _request_from(data: dict[str, object]) -> MediaRequest | None:
    """The request a ``media.signal`` carries, or None if it is not one."""
    call_id, instance, leg = data.get("call_id"), data.get("instance_id"), data.get("leg")
    user_id, device = data.get("user_id"), data.get("device")
    description, candidate = data.get("description"), data.get("candidate")
    if not (
        isinstance(call_id, int)
        and isinstance(instance, str)
        and isinstance(leg, str)
        and leg in LEGS
        and isinstance(user_id, int)
        and isinstance(device, str)
        and (description is None or isinstance(description, dict))
        and (candidate is None or isinstance(candidate, dict))
    ):
        return None
    return MediaRequest(call_id, instance, _as_leg(leg), user_id, device, description, candidate)


def _as_leg(value: str) -> Leg:
    if value in LEGS:
        return value
    raise ValueError(f"not a leg: {value!r}")


def _ice_servers(stun_urls: tuple[str, ...]) -> list[Any] | None:
    if not stun_urls:
        return None
    from aiortc import RTCIceServer

    return [RTCIceServer(urls=list(stun_urls))]


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("recording task failed", exc_info=task.exception())
