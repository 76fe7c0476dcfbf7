"""Periodic clean-up: keeps every table that grows by use within its bounds.

It runs as the periodic job ``housekeeping`` (every ``events.prune_interval``, once
per tick across all instances: :mod:`kernel.jobs.periodic`). Each step is an
idempotent DELETE anyway, so a retried round only repeats work.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

from kernel.clock import Clock
from kernel.idempotency import Idempotency
from rtc_server.config import AuthSettings, EventSettings
from rtc_server.metrics import Metrics
from storage import accounts
from storage import events as event_log
from storage.database import Database

log = logging.getLogger("rtc.housekeeping")


class Housekeeping:
    def __init__(
        self,
        db: Database,
        *,
        events: EventSettings,
        auth: AuthSettings,
        idempotency: Idempotency,
        clock: Clock,
        metrics: Metrics,
        jobs: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        self._db = db
        self._events = events
        self._auth = auth
        self._idempotency = idempotency
        self._clock = clock
        self._metrics = metrics
        # The domain's own clean-ups (notifications past retention ...), run each round.
        self._jobs = tuple(jobs)

    async def run_once(self) -> int:
        """One round; returns the number of events pruned."""
        removed = await event_log.prune(self._db, self._events.max_age, self._events.max_per_user)
        self._metrics.events_pruned.inc(removed)
        window = max(self._auth.otp_phone_window, self._auth.otp_ip_window)
        await accounts.prune_otp(self._db, self._clock.now() - timedelta(seconds=window))
        await accounts.prune_otp_challenges(self._db, self._clock.now())
        await accounts.prune_auth(self._db)
        await self._idempotency.prune()
        for job in self._jobs:
            await job()
        if removed:
            log.info("event log pruned", extra={"removed": removed})
        return removed
