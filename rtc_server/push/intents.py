"""Push intents: events that domain code marked for a push inside its own transaction
(:class:`kernel.outbox.StagedEvents` ``add(..., push_after=...)``, stored in
``push_intents`` with the time the push is due unless a device acknowledged it).

The periodic job ``push.intents`` hands them to push delivery: it takes the intents
not handed over yet (``sent_at`` set, ``FOR UPDATE SKIP LOCKED``), renders each one's
notice from its event with the renderer the domain registered for the event name, and
enqueues a ``push.event`` job in the same transaction, due at once if the user has no
live socket, else at the intent's ``due_at``. From there it is the same path as an
event published with a :class:`PushPolicy`: never pushed once acknowledged, at most
once per device.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from kernel.clock import Clock
from kernel.events import PushedEvent
from kernel.jobs import Job, Tick
from kernel.push import PushPolicy
from rtc_server.push.delivery import PushDelivery
from storage import push as push_store
from storage.database import Database

log = logging.getLogger("rtc.push")

# Intents handed over per transaction; a sweep runs as many as needed. Rendering and
# the jobs of a batch are worked out without a pause (about 50 us an intent): 500 at
# a time stopped the event loop for 15-20 ms once a second at 150 bookings/s, the whole
# of create -> offered's p99 (34 ms; 14 ms in batches of 50; bench/README.md).
BATCH = 50


class PushIntents:
    def __init__(
        self,
        db: Database,
        delivery: PushDelivery,
        clock: Clock,
        pushed: Mapping[str, PushedEvent[Any]],
    ) -> None:
        self._db = db
        self._delivery = delivery
        self._clock = clock
        self._pushed = pushed  # how each event is pushed, by name (features declare it)

    async def run(self, job: Job[Tick]) -> None:
        """The ``push.intents`` job."""
        await self.sweep()

    async def sweep(self) -> int:
        """Hand every waiting intent to push delivery; returns how many."""
        handed = 0
        while True:
            now = self._clock.now()
            async with self._db.transaction() as conn:
                intents = await push_store.take_intents(conn, BATCH, now)
                online = await self._delivery.online({i.user_id for i in intents})
                jobs = []
                for intent in intents:
                    policy = self._policy(intent)
                    if policy is None:
                        continue
                    delay = 0.0
                    if intent.user_id in online:
                        delay = max(0.0, (intent.due_at - now).total_seconds())
                    jobs += self._delivery.jobs_for(
                        {intent.user_id: intent.seq},
                        intent.event,
                        PushPolicy(policy.notice, wait_for_ack=delay, immediate=policy.immediate),
                        online,
                    )
                await self._delivery.queue.enqueue_many(jobs, conn=conn)
            handed += len(intents)
            if len(intents) < BATCH:
                return handed

    def _policy(self, intent: push_store.Intent) -> PushPolicy | None:
        pushed = self._pushed.get(intent.event)
        if pushed is None or intent.payload is None:
            log.warning(
                "push intent dropped",
                extra={
                    "event": intent.event,
                    "user": intent.user_id,
                    "seq": intent.seq,
                    "why": "no renderer" if pushed is None else "event pruned",
                },
            )
            return None
        return pushed.policy(intent.payload)
