"""Periodic clean-up: keeps every table that grows by use within its bounds.

It runs as the periodic job ``housekeeping`` (every ``events.prune_interval``, once
per tick across all instances: :mod:`kernel.jobs.periodic`): the event log and the
idempotency keys here, then each feature's own steps (``kit.cleanup``: login codes,
notifications past retention …). Each step is an idempotent DELETE, so a retried
round only repeats work.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from kernel.idempotency import Idempotency
from rtc_server.config import EventSettings
from rtc_server.metrics import Metrics
from storage import events as event_log
from storage.database import Database

log = logging.getLogger("rtc.housekeeping")


class Housekeeping:
    def __init__(
        self,
        db: Database,
        *,
        events: EventSettings,
        idempotency: Idempotency,
        metrics: Metrics,
        steps: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        self._db = db
        self._events = events
        self._idempotency = idempotency
        self._metrics = metrics
        self._steps = steps  # the features' own clean-ups, run each round

    async def run_once(self) -> int:
        """One round; returns the number of events pruned."""
        removed = await event_log.prune(self._db, self._events.max_age, self._events.max_per_user)
        self._metrics.events_pruned.inc(removed)
        await self._idempotency.prune()
        for step in self._steps:
            await step()
        if removed:
            log.info("event log pruned", extra={"removed": removed})
        return removed
