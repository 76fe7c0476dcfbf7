"""The composition root: builds the core from the settings, installs the features, runs.

Start order: database (embedded if no DSN) → migrations → bus → object store (its
bucket checked) → the kernel's parts (hub, events, jobs) → each feature of
:data:`rtc_server.features.FEATURES` installs itself (:class:`kernel.feature.Kit`) →
socket port → HTTP port → the features' start hooks → job worker, schedules and
tasks. Stop order is the reverse, with the socket port draining first (see
:meth:`SocketServer.shutdown`) and features stopping in the reverse order of
installation, then the HTTP port, the object store, the bus and the database.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import TypeVar

from kernel.audit import AUDIT, AuditLog
from kernel.bus import Bus, InProcessBus
from kernel.clock import Clock, SystemClock
from kernel.devices import Devices
from kernel.feature import Feature
from kernel.idempotency import Idempotency
from kernel.identity import AUTHENTICATOR
from kernel.jobs import Backoff, Job, JobQueue, JobSpec, PeriodicJobs, Tick, Worker
from kernel.objects import OBJECTS, ObjectStore
from kernel.outbox import Outbox
from kernel.publisher import EventPublisher
from kernel.rpc.registry import MethodRegistry
from kernel.signals import Signals
from rtc_server.config import ConfigError, CoreSettings
from rtc_server.dispatch import Dispatcher
from rtc_server.events import EventDelivery
from rtc_server.features import FEATURES
from rtc_server.housekeeping import Housekeeping
from rtc_server.http import HttpServer
from rtc_server.hub import Hub
from rtc_server.kit import AppKit
from rtc_server.metrics import Metrics
from rtc_server.objects import SCRATCH_MAX_AGE, SWEEP_OBJECTS, open_object_store
from rtc_server.server import SocketServer
from rtc_server.session_check import SessionCheck
from rtc_server.session_methods import SessionMethods
from storage import jobs as job_store
from storage.database import Database, PoolSettings
from storage.embedded import EmbeddedPostgres
from storage.migrate import apply_migrations, pending_migrations

log = logging.getLogger("rtc.app")

F = TypeVar("F")

# The core's own periodic jobs.
HOUSEKEEPING = JobSpec("housekeeping", Tick)
PRUNE_JOBS = JobSpec("jobs.prune", Tick)


async def open_database(settings: CoreSettings) -> tuple[Database, EmbeddedPostgres | None]:
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
                acquire_timeout=d.acquire_timeout,
                timezone=d.timezone,
            )
        )
    except BaseException:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
        raise
    return db, embedded


def check_production(settings: CoreSettings) -> None:
    """What production refuses of the core's settings (the features check their own)."""
    if settings.server.environment != "production":
        return
    http = settings.http
    if not http.metrics_token and not _loopback(http.host):
        raise ConfigError(
            "http.metrics_token is required in production (RTC_HTTP__METRICS_TOKEN): the"
            " HTTP port serves public routes, /metrics must not be one of them (or bind"
            " http.host to a loopback address)"
        )


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class App:
    """One server instance. ``await start()``, then ``await stop()``."""

    def __init__(
        self,
        settings: CoreSettings,
        *,
        clock: Clock | None = None,
        bus: Bus | None = None,
        features: Sequence[type[Feature]] = FEATURES,
    ) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.metrics = Metrics()
        self.bus: Bus = bus or self._make_bus()
        self.registry = MethodRegistry()
        self.features: list[Feature] = [kind() for kind in features]
        self.db: Database | None = None
        self.objects: ObjectStore | None = None
        self._embedded: EmbeddedPostgres | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.worker: Worker | None = None
        self._stopped = False

    def _make_bus(self) -> Bus:
        if not self.settings.redis.url:
            return InProcessBus()
        from rtc_server.scaleout.redis_bus import RedisBus

        return RedisBus(self.settings.redis, self.metrics)

    def feature(self, kind: type[F]) -> F:
        """The installed feature of class ``kind``."""
        for feature in self.features:
            if isinstance(feature, kind):
                return feature
        raise LookupError(f"{kind.__name__} is not installed")

    async def start(self) -> None:
        await self.prepare()
        await self.listen()

    async def prepare(self) -> None:
        """Everything but the ports: the database, the kernel, the installed features and
        the dispatcher (the driver tests drive it without sockets from here)."""
        check_production(self.settings)
        self.db, self._embedded = await open_database(self.settings)
        applied = await apply_migrations(self.db)
        if applied:
            log.info("migrations applied", extra={"migrations": applied})
        self.metrics.bind_pool(self.db.stats)
        await self.bus.start()
        self.objects = await open_object_store(self.settings)
        self.kit = self._build_kernel(self.db)
        for feature in self.features:
            await feature.install(self.kit)
        self._build_dispatcher()

    async def listen(self) -> None:
        """The socket port, the HTTP port, the features' start hooks, the background."""
        await self._listen()
        for hook in self.kit.declared.starts:
            await hook()
        self._run_background()
        log.info(
            "server ready",
            extra={"socket_port": self.sockets.port, "http_port": self.http.port},
        )

    def _build_kernel(self, db: Database) -> AppKit:
        """The parts every feature shares, and the core's own jobs."""
        s = self.settings
        self.hub = Hub(self.bus, self.metrics)
        self.signals = Signals(self.bus, self.hub)
        self.devices = Devices(
            self.bus, self.hub, instance_id=getattr(self.bus, "instance_id", None)
        )
        self.publisher = EventPublisher(db, self.bus, self.metrics, chunk=s.events.fanout_chunk)
        self.delivery = EventDelivery(db, self.hub, s.events, self.metrics)
        self.bus.on_restored(self.delivery.catch_up)
        self.jobs = JobQueue(db, self.clock, max_attempts=s.jobs.max_attempts)
        kit = AppKit(
            settings=s,
            db=db,
            clock=self.clock,
            bus=self.bus,
            outbox=Outbox(self.bus, self.metrics),
            publisher=self.publisher,
            jobs=self.jobs,
            signals=self.signals,
            devices=self.devices,
            methods=self.registry,
            metrics=self.metrics.registry,
        )
        self.idempotency = Idempotency(db)
        self.housekeeping = Housekeeping(
            db,
            events=s.events,
            idempotency=self.idempotency,
            metrics=self.metrics,
            steps=kit.declared.cleanups,
        )
        kit.job(HOUSEKEEPING, self._housekeeping)
        kit.every(s.events.prune_interval, HOUSEKEEPING)
        kit.job(PRUNE_JOBS, self._prune_jobs)
        kit.every(3600.0, PRUNE_JOBS)
        assert self.objects is not None
        kit.provide(OBJECTS, self.objects)
        kit.job(SWEEP_OBJECTS, self._sweep_objects)
        kit.every(3600.0, SWEEP_OBJECTS)
        return kit

    def _build_dispatcher(self) -> None:
        """The core's own methods (they bind sockets to the login feature's users)."""
        s = self.settings
        self.authenticator = self.kit.port(AUTHENTICATOR)
        SessionMethods(self.registry, self.authenticator, self.delivery).register()
        self.session_check = SessionCheck(
            self.hub, self.authenticator, self.metrics, s.server.session_check_interval
        )
        self.bus.on_restored(self._check_sessions)
        try:
            audit: AuditLog | None = self.kit.port(AUDIT)
        except LookupError:
            audit = None  # no feature keeps admins' actions
        self.dispatcher = Dispatcher(
            self.registry,
            s.server,
            self.metrics,
            idempotency=self.idempotency,
            log_requests=s.log.requests,
            audit=audit,
            sessions=self.authenticator,
        )

    async def _listen(self) -> None:
        s = self.settings
        self.sockets = SocketServer(
            s.server,
            hub=self.hub,
            dispatcher=self.dispatcher,
            delivery=self.delivery,
            authenticator=self.authenticator,
            metrics=self.metrics,
        )
        await self.sockets.start()
        self.http = HttpServer(s.http, self.metrics, self._readiness)
        self.http.add_routes(self.kit.declared.routes)
        await self.http.start()
        self.kit.listening(
            f"http://127.0.0.1:{self.http.port}",
            f"ws://127.0.0.1:{self.sockets.port}{s.server.path}",
        )

    def _run_background(self) -> None:
        assert self.db is not None
        j = self.settings.jobs
        declared = self.kit.declared
        self.worker = Worker(
            self.db,
            declared.jobs,
            self.clock,
            self.metrics,
            concurrency=j.concurrency,
            lease=j.lease,
            poll_interval=j.poll_interval,
            backoff=Backoff(j.backoff_base, j.backoff_max),
        )
        self.worker.start()
        self.periodic = PeriodicJobs(self.db, self.jobs, self.clock, declared.schedules)
        self._tasks.append(asyncio.create_task(self.periodic.run_forever()))
        self._tasks.append(asyncio.create_task(self.session_check.run_forever()))
        self._tasks += [asyncio.create_task(run()) for run in declared.tasks]

    async def _check_sessions(self) -> None:
        # Revocations published while the bus was down may have been dropped.
        await self.session_check.check()

    async def _housekeeping(self, job: Job[Tick]) -> int:
        return await self.housekeeping.run_once()

    async def _prune_jobs(self, job: Job[Tick]) -> None:
        assert self.db is not None
        now = self.clock.now()
        removed = await job_store.prune(
            self.db,
            failed_before=now - timedelta(days=self.settings.jobs.failed_retention_days),
            ticks_before=now - timedelta(days=1),
        )
        if removed:
            log.info("job queue pruned", extra={"removed": removed})

    async def _sweep_objects(self, job: Job[Tick]) -> int:
        assert self.objects is not None
        removed = await self.objects.sweep_temp(SCRATCH_MAX_AGE)
        if removed:
            log.info("object store leftovers removed", extra={"removed": removed})
        return removed

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
        elif hasattr(self, "dispatcher"):  # prepared, never listening (the driver tests)
            await self.dispatcher.drain(self.settings.server.shutdown_grace)
            for task in list(self.dispatcher.tasks):
                task.cancel()
            await self.delivery.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if hasattr(self, "kit"):
            await self.kit.settle()
        if self.worker is not None:
            await self.worker.stop(grace=self.settings.server.shutdown_grace)
        if hasattr(self, "kit"):
            for hook in reversed(self.kit.declared.stops):
                await hook()
        if hasattr(self, "http"):
            await self.http.stop()
        if self.objects is not None:
            await self.objects.close()
        await self.bus.close()
        if self.db is not None:
            await self.db.close()
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.stop)
        log.info("stopped")
