"""Push delivery as a feature: the device registry (``push.*``), what was pushed to a
user for support (``admin.push.history``), the jobs that decide and send pushes, the
sweep of push intents, and the providers (FCM, APNs, Web Push).

Other features say which of their events are pushed, and how, when they declare them
(``kit.event(spec, push=renderer)``); this feature renders and sends them.
"""

from __future__ import annotations

from kernel.feature import Feature, Kit
from rtc_server.push.delivery import PushDelivery
from rtc_server.push.devices import PushDevices
from rtc_server.push.history import PushHistoryService
from rtc_server.push.intents import PushIntents
from rtc_server.push.jobs import PUSH_EVENT, PUSH_INTENTS, PUSH_PRUNE, PUSH_SEND
from rtc_server.push.metrics import PushMetrics
from rtc_server.push.providers.configured import providers_from
from rtc_server.push.providers.webpush import WebPushProvider
from rtc_server.push.settings import PushSettings


class PushFeature(Feature):
    name = "push"
    settings = PushSettings

    async def install(self, kit: Kit) -> None:
        s = kit.settings(PushSettings)
        self.delivery = PushDelivery(
            kit.db,
            kit.jobs,
            kit.online,
            providers_from(s, kit.clock),
            s,
            kit.clock,
            PushMetrics(kit.metrics),
        )
        kit.publisher.push = self.delivery  # events published with a push policy
        web = self.delivery.providers.get("webpush")
        PushDevices(
            kit.db,
            s,
            kit.clock,
            web_push_key=web.vapid_public_key if isinstance(web, WebPushProvider) else None,
        ).register(kit.methods)
        PushHistoryService(kit.db).register(kit.methods)  # admin.push.history
        # Events the domain marked for a push in its transaction (push_intents).
        self.intents = PushIntents(kit.db, self.delivery, kit.clock, kit.pushed_events)
        kit.job(PUSH_EVENT, self.delivery.decide)
        kit.job(PUSH_SEND, self.delivery.send)
        kit.job(PUSH_INTENTS, self.intents.run)
        kit.job(PUSH_PRUNE, self.delivery.prune)
        kit.every(s.intent_sweep_interval, PUSH_INTENTS)
        kit.every(3600.0, PUSH_PRUNE)  # in batches: an hour's pushes are pruned in a round
        kit.on_stop(self.delivery.close)
