"""Deciding and sending pushes, as jobs of the durable queue.

An event published with a :class:`PushPolicy` enqueues, in the transaction that stores
the event, a ``push.event`` job for each recipient: due at once if the user has no
live socket (or the policy is ``immediate``), else after the policy's wait for an
acknowledgement. Then:

``push.event`` (user, seq)
    acknowledged already (``acked_seq >= seq``)? category switched off? → nothing.
    Else one ``push_deliveries`` row per device of the user (pending) and one
    ``push.send`` job per row, in one statement. A row that exists already (a job
    run twice, a restart) is not decided again: exactly once per (user, event, device).

``push.send`` (user, seq, device)
    only while its row is pending; acknowledged meanwhile or expired (older than the
    notice's ttl) → skipped. One call to the device's provider, logged in
    ``push_logs``; the row becomes sent / failed, a dead token is deleted, a throttled
    or failed call is retried by the queue (Retry-After honoured).

The one window left: a crash after the provider accepted a push and before the row
says sent makes the retry send it again; the collapse key makes the device show it
once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import timedelta

from kernel.clock import Clock
from kernel.jobs import Job, JobQueue, RetryLater, Tick
from kernel.push import PushNotice, PushPolicy
from rtc_server.push.jobs import PUSH_EVENT, PUSH_SEND, PushEvent, PushSend
from rtc_server.push.metrics import PushMetrics
from rtc_server.push.providers.base import Outcome, PushMessage, PushProvider, SendResult
from rtc_server.push.settings import PushSettings
from storage import jobs as job_store
from storage import push as push_store
from storage.database import Database
from storage.events import Executor

log = logging.getLogger("rtc.push")


class PushDelivery:
    def __init__(
        self,
        db: Database,
        queue: JobQueue,
        online: Callable[[list[int]], Awaitable[set[int]]],
        providers: Mapping[str, PushProvider],
        settings: PushSettings,
        clock: Clock,
        metrics: PushMetrics,
    ) -> None:
        self._db = db
        self.queue = queue
        self._online = online  # Bus.online: who has a socket on any instance
        self.providers = dict(providers)
        self._settings = settings
        self._clock = clock
        self._metrics = metrics

    # Publishing side: called by EventPublisher.

    async def online(self, user_ids: Iterable[int]) -> set[int]:
        """Users with a live socket; if the bus cannot tell, everyone (they are then
        pushed after the ack wait rather than at once, never lost)."""
        users = list(user_ids)
        try:
            return await self._online(users)
        except Exception:  # noqa: BLE001 - the bus's failures are its own to log
            return set(users)

    def jobs_for(
        self, seqs: Mapping[int, int], event: str, policy: PushPolicy, online: set[int]
    ) -> list[job_store.NewJob]:
        """The ``push.event`` jobs of one published event."""
        wait = self._settings.ack_timeout if policy.wait_for_ack is None else policy.wait_for_ack
        published = self._clock.now()
        notice = policy.notice.to_json()
        return [
            self.queue.new(
                PUSH_EVENT,
                PushEvent(user=user, seq=seq, event=event, notice=notice, published=published),
                delay=0.0 if policy.immediate or user not in online else wait,
                dedup_key=f"push:{user}:{seq}",
            )
            for user, seq in seqs.items()
        ]

    async def schedule(
        self,
        conn: Executor,
        seqs: Mapping[int, int],
        event: str,
        policy: PushPolicy,
        online: set[int],
    ) -> None:
        """Enqueue the event's push decisions in the caller's transaction."""
        await self.queue.enqueue_many(self.jobs_for(seqs, event, policy, online), conn=conn)

    # push.event: decide which devices get it.

    async def decide(self, job: Job[PushEvent]) -> None:
        user, seq = job.payload.user, job.payload.seq
        notice = PushNotice.from_json(job.payload.notice)
        inputs = await push_store.decision_inputs(
            self._db, user, notice.category, list(self.providers)
        )
        if inputs.acked_seq >= seq:
            self._metrics.push_skipped.labels("acknowledged").inc()
            return
        if not inputs.wanted:
            self._metrics.push_skipped.labels("category_off").inc()
            return
        # An ack or a new device after the read above is caught by push.send, which
        # reads both again; the decision rows make a second decision a no-op.
        await push_store.decide_and_enqueue(
            self._db,
            user,
            seq,
            inputs.device_ids,
            self._clock.now(),
            send_kind=PUSH_SEND.kind,
            send_payload=PUSH_EVENT.encode(job.payload),
            max_attempts=self.queue.max_attempts,
            sent=push_store.Sent(job.payload.event, notice.category, notice.title, notice.body),
        )

    # push.send: one device, one provider call.

    async def send(self, job: Job[PushSend]) -> None:
        p = job.payload
        user, seq, device_id = p.user, p.seq, p.device
        notice = PushNotice.from_json(p.notice)
        now = self._clock.now()
        state = await push_store.pending_send(self._db, user, seq, device_id)
        if state.status != "pending":
            return  # sent, skipped or failed already: never twice
        if now > p.published + timedelta(seconds=notice.ttl):
            await self._finish(user, seq, device_id, "failed", "expired")
            return
        if state.acked_seq >= seq:
            await self._finish(user, seq, device_id, "skipped", "acknowledged")
            return
        device = state.device
        provider = self.providers.get(device.provider) if device is not None else None
        if device is None or provider is None:
            await self._finish(user, seq, device_id, "skipped", "device_gone")
            return
        started = time.perf_counter()
        result = await provider.send(device, PushMessage(user, seq, p.event, notice))
        latency = time.perf_counter() - started
        self._metrics.push_attempts.labels(provider.name, result.outcome.value).inc()
        self._metrics.push_latency.labels(provider.name).observe(latency)
        retry = await self._record(job, device, result, latency)
        if retry:
            raise RetryLater(
                f"{provider.name}: {result.outcome.value} {result.http_status} "
                f"{result.provider_code}",
                after=result.retry_after,
            )

    async def _record(
        self, job: Job[PushSend], device: push_store.Device, result: SendResult, latency: float
    ) -> bool:
        """Log the attempt and settle the delivery; True when the queue should retry."""
        user, seq = job.payload.user, job.payload.seq
        now = self._clock.now()
        finish = _settle(result)
        if finish is None and job.last_attempt:
            finish = ("failed", f"gave_up:{result.provider_code or result.outcome.value}")
        invalid = result.outcome is Outcome.TOKEN_INVALID
        await push_store.record_attempt(
            self._db,
            push_store.Attempt(
                user,
                seq,
                device.device_id,
                device.provider,
                result.outcome.value,
                result.http_status,
                result.provider_code,
                latency * 1000.0,
                now,
            ),
            finish=finish,
            forget_token=device.token if invalid else None,
            registered_before=result.invalid_since,
        )
        retry = finish is None
        if result.outcome is Outcome.TOKEN_INVALID:
            log.info(
                "push token deleted",
                extra={
                    "user": user,
                    "device": device.device_id,
                    "provider": device.provider,
                    "code": result.provider_code,
                },
            )
        elif result.outcome is Outcome.AUTH_ERROR:
            log.error(
                "push provider refused our credentials",
                extra={"provider": device.provider, "code": result.provider_code},
            )
        return retry

    async def _finish(self, user: int, seq: int, device_id: str, status: str, reason: str) -> None:
        await push_store.finish_delivery(
            self._db, user, seq, device_id, status, reason, self._clock.now()
        )
        self._metrics.push_skipped.labels(reason).inc()

    async def prune(self, job: Job[Tick]) -> None:
        before = self._clock.now() - timedelta(days=self._settings.retention_days)
        removed = await push_store.prune(self._db, before)
        if removed:
            log.info("push records pruned", extra={"removed": removed})

    async def close(self) -> None:
        for provider in self.providers.values():
            await provider.close()


def _settle(result: SendResult) -> tuple[str, str] | None:
    """The delivery's final status and reason, or None to retry."""
    match result.outcome:
        case Outcome.SENT:
            return ("sent", "sent")
        case Outcome.TOKEN_INVALID:
            return ("failed", "token_invalid")
        case Outcome.REFUSED:
            return ("failed", result.provider_code or "refused")
        case Outcome.RETRY | Outcome.AUTH_ERROR:
            return None
