"""The composition root: builds every component from the settings and runs them.

Start order: database (embedded if no DSN) → migrations → secrets → bus → hub,
events, methods → socket port → HTTP port → background jobs. Stop order is the
reverse, with the socket port draining first (see :meth:`SocketServer.shutdown`).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path
from uuid import UUID

from api.addresses import AddressService
from api.admin import AdminService
from api.auth.service import AuthService, LogSmsSender, SmsSender
from api.bookings.push import notification_push, offer_push
from api.bookings.service import BookingService
from api.catalog.cache import CatalogCache
from api.catalog.service import CatalogService
from api.earnings import EarningsService
from api.notifications import NotificationService
from api.profile import ProfileService
from api.providers import ProviderService
from api.ratings import RatingService
from api.reports import ReportService
from kernel.bus import Bus, InProcessBus, SessionsRevoked
from kernel.clock import Clock, SystemClock
from kernel.devices import Devices
from kernel.idempotency import Idempotency
from kernel.jobs import Backoff, Job, JobQueue, Periodic, PeriodicJobs, Worker
from kernel.jobs.worker import Handler
from kernel.outbox import Outbox
from kernel.publisher import EventPublisher
from kernel.rpc.registry import MethodRegistry
from kernel.signals import Signals
from recordings.host import MediaHost
from recordings.links import LinkSigner
from recordings.service import RecordingService
from recordings.store import LocalStore
from rtc_server.config import Settings
from rtc_server.dispatch import Dispatcher
from rtc_server.events import EventDelivery
from rtc_server.housekeeping import Housekeeping
from rtc_server.http import HttpServer
from rtc_server.hub import Hub
from rtc_server.metrics import Metrics
from rtc_server.push.delivery import PushDelivery
from rtc_server.push.devices import PushDevices
from rtc_server.push.intents import PushIntents
from rtc_server.push.providers.configured import providers_from
from rtc_server.push.providers.webpush import WebPushProvider
from rtc_server.server import SocketServer
from rtc_server.session_methods import SessionMethods
from signalling.push import incoming_call_push, missed_call_push
from signalling.service import CallService
from storage import accounts, catalog
from storage import jobs as job_store
from storage.database import Database, PoolSettings
from storage.embedded import EmbeddedPostgres
from storage.migrate import apply_migrations, pending_migrations

log = logging.getLogger("rtc.app")


async def open_database(settings: Settings) -> tuple[Database, EmbeddedPostgres | None]:
    """Connect to the configured PostgreSQL, or start the embedded one."""
    embedded = None
    dsn = settings.database.dsn
    if not dsn:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        embedded = await asyncio.to_thread(EmbeddedPostgres.start, settings.data_dir)
        dsn = embedded.dsn
        log.info("embedded postgresql running", extra={"data_dir": str(settings.data_dir)})
    d = settings.database
    try:
        db = await Database.connect(
            PoolSettings(
                dsn=dsn,
                min_size=d.pool_min,
                max_size=d.pool_max,
                max_inactive_connection_lifetime=d.idle_timeout,
                connect_timeout=d.connect_timeout,
                command_timeout=d.command_timeout,
                timezone=d.timezone,
            )
        )
    except BaseException:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
        raise
    return db, embedded


class App:
    """One server instance. ``await start()``, then ``await stop()``."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        sms: SmsSender | None = None,
        bus: Bus | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.sms = sms or LogSmsSender()
        self.metrics = Metrics()
        self.bus: Bus = bus or self._make_bus()
        self.registry = MethodRegistry()
        self.db: Database | None = None
        self._embedded: EmbeddedPostgres | None = None
        self._jobs: list[asyncio.Task[None]] = []
        self.worker: Worker | None = None
        self._revocations: set[asyncio.Task[None]] = set()
        self._stopped = False

    def _make_bus(self) -> Bus:
        if not self.settings.redis.url:
            return InProcessBus()
        from rtc_server.scaleout.redis_bus import RedisBus

        return RedisBus(self.settings.redis, self.metrics)

    async def start(self) -> None:
        s = self.settings
        self.db, self._embedded = await open_database(s)
        db = self.db
        applied = await apply_migrations(db)
        if applied:
            log.info("migrations applied", extra={"migrations": applied})
        jwt_secret = s.auth.jwt_secret.encode() or await accounts.server_secret(db, "jwt")
        otp_key = await accounts.server_secret(db, "otp_hmac")
        self.metrics.bind_pool(db.stats)

        await self.bus.start()
        self.hub = Hub(self.bus, self.metrics)
        self.signals = Signals(self.bus, self.hub)
        self.publisher = EventPublisher(db, self.bus, self.metrics, chunk=s.events.fanout_chunk)
        self.delivery = EventDelivery(db, self.hub, s.events, self.metrics)
        self.bus.on_restored(self.delivery.catch_up)
        # The durable job queue: features add their handlers and periodic jobs here;
        # the worker starts once everything is registered.
        self.jobs = JobQueue(db, self.clock, max_attempts=s.jobs.max_attempts)
        self.job_handlers: dict[str, Handler] = {"jobs.prune": self._prune_jobs}
        self.periodic_jobs = [Periodic("jobs.prune", 3600.0, "jobs.prune")]
        # Push delivery: events published with a push policy enqueue push jobs.
        self.push = PushDelivery(
            db,
            self.jobs,
            self.bus,
            providers_from(s.push, self.clock),
            s.push,
            self.clock,
            self.metrics,
        )
        self.publisher.push = self.push
        self.job_handlers.update(self.push.handlers())
        self.periodic_jobs.append(Periodic("push.prune", 86400.0, "push.prune"))
        self.auth = AuthService(
            db,
            s.auth,
            jwt_secret=jwt_secret,
            otp_key=otp_key,
            clock=self.clock,
            sms=self.sms,
            on_revoked=self._close_revoked_sessions,
        )
        SessionMethods(self.registry, self.auth, self.delivery).register()
        self.auth.register(self.registry)
        ProfileService(db).register(self.registry)
        AddressService(db).register(self.registry)
        self.catalog_cache = CatalogCache(lambda: catalog.load_catalog(db), self.clock)
        CatalogService(db, self.catalog_cache, self.signals).register(self.registry)
        ProviderService(db, self.clock).register(self.registry)
        AdminService(db, self.clock, self._close_revoked_sessions).register(self.registry)
        # The marketplace's live jobs: their events commit with the change (outbox).
        self.outbox = Outbox(self.bus, self.metrics)
        timezone = s.database.timezone
        BookingService(
            db, self.outbox, self.clock, s.bookings, timezone=timezone, metrics=self.metrics
        ).register(self.registry)
        RatingService(db, self.outbox, self.clock).register(self.registry)
        ReportService(db, self.clock, s.bookings).register(self.registry)
        self.notifications = NotificationService(db, self.clock, s.notifications)
        self.notifications.register(self.registry)
        EarningsService(db, self.clock, timezone).register(self.registry)
        web = self.push.providers.get("webpush")
        PushDevices(
            db,
            s.push,
            self.clock,
            web_push_key=web.vapid_public_key if isinstance(web, WebPushProvider) else None,
        ).register(self.registry)
        # Events the domain marked for a push in its transaction (push_intents).
        self.push_intents = PushIntents(db, self.push, self.clock)
        self.push_intents.render("booking.offered", offer_push(timezone))
        self.push_intents.render("notification.created", notification_push)
        self.push_intents.render("call.incoming", incoming_call_push)
        self.push_intents.render("call.ended", missed_call_push)  # only missed ones are due
        self.job_handlers["push.intents"] = self.push_intents.run
        self.periodic_jobs.append(
            Periodic("push.intents", s.push.intent_sweep_interval, "push.intents")
        )
        # Masked calls: state in PostgreSQL (any instance changes any call), signals
        # from device to device over the bus.
        self.devices = Devices(
            self.bus, self.hub, instance_id=getattr(self.bus, "instance_id", None)
        )
        # Recorded calls: the server's own media path (aiortc) on the instance the call
        # was started on; files in a RecordingStore, downloads by signed links.
        self.recording_store = LocalStore(
            Path(s.recordings.dir) if s.recordings.dir else s.data_dir / "recordings"
        )
        self.media = MediaHost(
            db,
            self.recording_store,
            self.outbox,
            self.devices,
            self.signals,
            self.clock,
            s.recordings,
            self.metrics,
            jobs=self.jobs,
            publish_event=lambda event: self.calls.publish_event(event),
            connected=lambda call_id: self.calls.connect_call(call_id),
        )
        self.calls = CallService(
            db,
            self.outbox,
            self.devices,
            self.signals,
            self.clock,
            s.calls,
            self.metrics,
            online=self.bus.online,
            media=self.media,
        )
        self.calls.register(self.registry)
        self.calls.on_event(self.media.call_event)
        link_key = s.recordings.link_secret.encode() or await accounts.server_secret(
            db, "recording_links"
        )
        self.recordings = RecordingService(
            db,
            self.recording_store,
            LinkSigner(link_key),
            self.clock,
            s.recordings,
            self.metrics,
            public_url=s.recordings.public_url,
        )
        self.recordings.register(self.registry)
        self.job_handlers["recordings.retention"] = self._recordings_retention
        self.job_handlers["recordings.mix"] = self.recordings.mix
        self.periodic_jobs.append(Periodic("recordings.retention", 3600.0, "recordings.retention"))
        if self.calls.policy.value == "open":
            log.warning(
                "calls: no TURN configured, ICE policy open: parties can learn each "
                "other's network addresses (set calls.turn_urls and calls.turn_secret)"
            )

        idempotency = Idempotency(db)
        self.dispatcher = Dispatcher(
            self.registry,
            s.server,
            self.metrics,
            idempotency=idempotency,
            log_requests=s.log.requests,
        )
        self.sockets = SocketServer(
            s.server,
            hub=self.hub,
            dispatcher=self.dispatcher,
            delivery=self.delivery,
            authenticator=self.auth,
            metrics=self.metrics,
        )
        await self.sockets.start()
        self.http = HttpServer(s.http, self.metrics, self._readiness)
        self.recordings.add_routes(self.http.app)
        await self.http.start()
        if not s.recordings.public_url:
            self.recordings.public_url = f"http://127.0.0.1:{self.http.port}"
        self.housekeeping = Housekeeping(
            db,
            events=s.events,
            auth=s.auth,
            idempotency=idempotency,
            clock=self.clock,
            metrics=self.metrics,
            jobs=[self._prune_notifications],
        )
        # Once per tick across all instances, through the job queue.
        self.job_handlers["housekeeping"] = self._housekeeping
        self.periodic_jobs.append(Periodic("housekeeping", s.events.prune_interval, "housekeeping"))
        self._start_jobs()
        self._jobs.append(asyncio.create_task(self.calls.run_sweeps()))
        self._jobs.append(asyncio.create_task(self.media.run()))
        log.info(
            "server ready",
            extra={"socket_port": self.sockets.port, "http_port": self.http.port},
        )

    async def _recordings_retention(self, job: Job) -> None:
        deleted = await self.recordings.enforce_retention()
        if deleted:
            log.info("recordings past retention deleted", extra={"deleted": deleted})

    async def _housekeeping(self, job: Job) -> None:
        await self.housekeeping.run_once()

    async def _prune_notifications(self) -> None:
        removed = await self.notifications.prune()
        self.metrics.notifications_pruned.inc(removed)
        if removed:
            log.info("notifications pruned", extra={"removed": removed})

    def _start_jobs(self) -> None:
        assert self.db is not None
        j = self.settings.jobs
        self.worker = Worker(
            self.db,
            self.job_handlers,
            self.clock,
            self.metrics,
            concurrency=j.concurrency,
            lease=j.lease,
            poll_interval=j.poll_interval,
            backoff=Backoff(j.backoff_base, j.backoff_max),
        )
        self.worker.start()
        self.periodic = PeriodicJobs(self.db, self.jobs, self.clock, self.periodic_jobs)
        self._jobs.append(asyncio.create_task(self.periodic.run_forever()))

    async def _prune_jobs(self, job: Job) -> None:
        assert self.db is not None
        now = self.clock.now()
        removed = await job_store.prune(
            self.db,
            failed_before=now - timedelta(days=self.settings.jobs.failed_retention_days),
            ticks_before=now - timedelta(days=1),
        )
        if removed:
            log.info("job queue pruned", extra={"removed": removed})

    async def _close_revoked_sessions(
        self, user_id: int, session_ids: list[UUID], reason: str
    ) -> None:
        # Published from a task so that the revoking request's own answer is written
        # before its socket is closed.
        message = SessionsRevoked(user_id, tuple(str(s) for s in session_ids), reason)
        task = asyncio.create_task(self.bus.publish(message))
        self._revocations.add(task)
        task.add_done_callback(self._revocations.discard)

    async def _readiness(self) -> dict[str, bool]:
        assert self.db is not None
        database = await self.db.ping()
        migrated = False
        if database:
            try:
                migrated = not await pending_migrations(self.db)
            except Exception:  # noqa: BLE001 - readiness reports, never raises
                migrated = False
        return {
            "database": database,
            "migrations": migrated,
            "bus": self.bus.healthy,
            "accepting": not self.dispatcher.draining,
        }

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        log.info("shutting down")
        if hasattr(self, "sockets"):
            await self.sockets.shutdown()
        for job in self._jobs:
            job.cancel()
        await asyncio.gather(*self._jobs, *self._revocations, return_exceptions=True)
        if self.worker is not None:
            await self.worker.stop(grace=self.settings.server.shutdown_grace)
        if hasattr(self, "push"):
            await self.push.close()
        if hasattr(self, "media"):
            await self.media.close()
        if hasattr(self, "calls"):
            await self.calls.close()
        if hasattr(self, "http"):
            await self.http.stop()
        await self.bus.close()
        if self.db is not None:
            await self.db.close()
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.stop)
        log.info("stopped")
