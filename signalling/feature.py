"""Masked calls as a feature: ``calls.*`` and ``admin.calls.*``, the call events (the
incoming call and the missed call pushed), the sweeps, and the :data:`CALLS` port."""

from __future__ import annotations

import logging

from kernel.feature import Feature, Kit
from signalling import events
from signalling.metrics import CallMetrics
from signalling.ports import CALLS
from signalling.push import incoming_call_push, missed_call_push
from signalling.service import CallService
from signalling.settings import CallSettings

log = logging.getLogger("rtc.calls")


class CallsFeature(Feature):
    name = "calls"
    settings = CallSettings

    async def install(self, kit: Kit) -> None:
        self.service = CallService(
            kit.db,
            kit.outbox,
            kit.devices,
            kit.signals,
            kit.clock,
            kit.settings(CallSettings),
            CallMetrics(kit.metrics),
            online=kit.online,
        )
        self.service.register(kit.methods)
        for spec in events.ALL:
            kit.event(spec)
        kit.event(events.CALL_INCOMING, push=incoming_call_push)
        kit.event(events.CALL_ENDED, push=missed_call_push)  # only missed ones are due
        kit.provide(CALLS, self.service)
        kit.task(self.service.run_sweeps)
        kit.on_stop(self.service.close)
        if self.service.policy == "open":
            log.warning(
                "calls: no TURN configured, ICE policy open: parties can learn each "
                "other's network addresses (set calls.turn_urls and calls.turn_secret)"
            )
