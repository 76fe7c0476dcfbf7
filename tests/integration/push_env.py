"""A push delivery stack on a real PostgreSQL, driven by hand: users and devices, a
publisher, the queue, a worker whose rounds the test runs (``deliver()``)."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from kernel.bus import InProcessBus
from kernel.clock import FakeClock
from kernel.jobs import JobHandler, JobQueue, Worker, handlers
from kernel.publisher import EventPublisher
from kernel.push import PushNotice, PushPolicy
from rtc_server.metrics import Metrics
from rtc_server.push.delivery import PushDelivery
from rtc_server.push.jobs import PUSH_EVENT, PUSH_SEND
from rtc_server.push.metrics import PushMetrics
from rtc_server.push.providers.base import PushProvider
from rtc_server.push.settings import PushSettings
from storage import Database
from storage import push as push_store

_phones = iter(range(9_100_000_000, 9_999_999_999, 7_717))


def offer_policy(booking: int = 42, **notice: object) -> PushPolicy:
    fields: dict[str, object] = {
        "title": "New job",
        "body": "Plumbing, tomorrow 10:00, Indiranagar",
        "category": "bookings",
        "collapse_key": f"booking:{booking}",
        "urgency": "high",
        "data": {"bookingId": str(booking)},
        **notice,
    }
    return PushPolicy(PushNotice(**fields))  # type: ignore[arg-type]


@dataclass
class PushEnv:
    db: Database
    clock: FakeClock
    bus: InProcessBus
    metrics: Metrics
    queue: JobQueue
    delivery: PushDelivery
    publisher: EventPublisher
    worker: Worker

    @classmethod
    def build(
        cls,
        db: Database,
        clock: FakeClock,
        providers: Mapping[str, PushProvider],
        settings: PushSettings | None = None,
        **worker_options: object,
    ) -> PushEnv:
        bus = InProcessBus()
        metrics = Metrics()
        queue = JobQueue(db, clock, max_attempts=5)
        delivery = PushDelivery(
            db,
            queue,
            bus.online,
            providers,
            settings or PushSettings(),
            clock,
            PushMetrics(metrics.registry),
        )
        publisher = EventPublisher(db, bus, metrics, push=delivery)
        worker = Worker(
            db,
            handlers(JobHandler(PUSH_EVENT, delivery.decide), JobHandler(PUSH_SEND, delivery.send)),
            clock,
            metrics,
            rng=random.Random(3),
            **worker_options,  # type: ignore[arg-type]
        )
        return cls(db, clock, bus, metrics, queue, delivery, publisher, worker)

    async def user(self) -> int:
        user_id: int = await self.db.fetchval(
            "INSERT INTO users (phone, role) VALUES ($1, 'provider') RETURNING id",
            f"+91{next(_phones)}",
        )
        return user_id

    async def device(
        self, user_id: int, device_id: str, token: str, provider: str = "fcm", **extra: object
    ) -> push_store.Device:
        platform = {"fcm": "android", "apns": "ios", "webpush": "web"}[provider]
        return await push_store.register_device(
            self.db,
            push_store.Device(
                user_id=user_id,
                device_id=device_id,
                platform=platform,
                provider=provider,
                token=token,
                web_keys=extra.get("web_keys"),  # type: ignore[arg-type]
                app_version=None,
                registered_at=self.clock.now(),
            ),
            max_devices=10,
        )

    async def deliver(self) -> int:
        """Run every due job (decisions, then sends) until none is due."""
        return await self.worker.run_due()

    async def deliveries(self, user_id: int) -> dict[str, tuple[str, str | None]]:
        rows = await self.db.fetch(
            "SELECT device_id, status, reason FROM push_deliveries WHERE user_id = $1", user_id
        )
        return {r["device_id"]: (r["status"], r["reason"]) for r in rows}

    async def logs(self, user_id: int) -> list[tuple[str, int | None, str | None]]:
        rows = await self.db.fetch(
            "SELECT outcome, http_status, provider_code FROM push_logs"
            " WHERE user_id = $1 ORDER BY id",
            user_id,
        )
        return [(r["outcome"], r["http_status"], r["provider_code"]) for r in rows]

    async def tokens(self, user_id: int) -> dict[str, str]:
        return {d.device_id: d.token for d in await push_store.devices_of(self.db, user_id)}

    async def pending_jobs(self, kind: str) -> list[dict[str, object]]:
        rows = await self.db.fetch("SELECT * FROM jobs WHERE kind = $1", kind)
        return [dict(r) for r in rows]
