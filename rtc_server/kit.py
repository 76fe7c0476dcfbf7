"""The kit features install themselves with (:class:`kernel.feature.Kit`), as the
composition root implements it: the kernel's parts, and what the features declared.

The root builds one :class:`AppKit`, hands it to each feature's ``install`` in turn,
then reads what they declared to start the ports, the job worker and the tasks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from prometheus_client import CollectorRegistry

from kernel.bus import Bus, SessionsRevoked
from kernel.clock import Clock
from kernel.devices import Devices
from kernel.events import EventSpec, M, PushedEvent, PushRenderer
from kernel.feature import HttpHandler, PortKey
from kernel.jobs import Calendar, Job, JobHandler, JobQueue, JobSpec, Periodic, Schedule, Tick
from kernel.jobs.spec import P
from kernel.outbox import Outbox
from kernel.publisher import EventPublisher
from kernel.rpc.registry import MethodRegistry
from kernel.settings import Section
from kernel.signals import Signals
from rtc_server.admission import ClientAddress
from rtc_server.config import CoreSettings
from storage import accounts
from storage.database import Database

S = TypeVar("S", bound=Section)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: HttpHandler


@dataclass
class Declared:
    """What the installed features asked for."""

    jobs: dict[str, JobHandler[Any]] = field(default_factory=dict)
    schedules: list[Schedule] = field(default_factory=list)
    cleanups: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    tasks: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    starts: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    stops: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    pushed: dict[str, PushedEvent[Any]] = field(default_factory=dict)


class AppKit:
    def __init__(
        self,
        *,
        settings: CoreSettings,
        db: Database,
        clock: Clock,
        bus: Bus,
        outbox: Outbox,
        publisher: EventPublisher,
        jobs: JobQueue,
        signals: Signals,
        devices: Devices,
        methods: MethodRegistry,
        metrics: CollectorRegistry,
    ) -> None:
        self._settings = settings
        self.db = db
        self.clock = clock
        self._bus = bus
        self.outbox = outbox
        self.publisher = publisher
        self.jobs = jobs
        self.signals = signals
        self.devices = devices
        self.methods = methods
        self.metrics = metrics
        self.declared = Declared()
        self._ports: dict[str, Any] = {}
        self._http_url: str | None = None
        self._socket_url: str | None = None
        self._client_address = ClientAddress(settings.server.trusted_proxies)
        self._revocations: set[asyncio.Task[None]] = set()

    @property
    def production(self) -> bool:
        return self._settings.server.environment == "production"

    @property
    def data_dir(self) -> Path:
        return self._settings.data_dir

    @property
    def timezone(self) -> str:
        return self._settings.database.timezone

    @property
    def pushed_events(self) -> Mapping[str, PushedEvent[Any]]:
        return self.declared.pushed

    def settings(self, section: type[S]) -> S:
        return self._settings.section(section)

    async def secret(self, name: str, configured: str = "") -> bytes:
        return configured.encode() or await accounts.server_secret(self.db, name)

    async def online(self, user_ids: Iterable[int]) -> set[int]:
        return await self._bus.online(user_ids)

    def client_address(self, peer: str | None, forwarded_for: Sequence[str]) -> str | None:
        return self._client_address(peer, forwarded_for)

    def http_url(self) -> str:
        if self._http_url is None:
            raise RuntimeError("the HTTP port is not listening yet: ask in an on_start hook")
        return self._http_url

    def socket_url(self) -> str:
        if self._socket_url is None:
            raise RuntimeError("the socket port is not listening yet: ask in an on_start hook")
        return self._socket_url

    def listening(self, http_url: str, socket_url: str) -> None:
        self._http_url = http_url
        self._socket_url = socket_url

    async def revoke(self, user_id: int, session_ids: Sequence[UUID], reason: str) -> None:
        # Published from a task so that the revoking request's own answer is written
        # before its socket is closed.
        message = SessionsRevoked(user_id, tuple(str(s) for s in session_ids), reason)
        task = asyncio.create_task(self._bus.publish(message))
        self._revocations.add(task)
        task.add_done_callback(self._revocations.discard)

    async def settle(self) -> None:
        """Wait for revocations still being published (at stop)."""
        await asyncio.gather(*self._revocations, return_exceptions=True)

    def event(self, spec: EventSpec[M], *, push: PushRenderer[M] | None = None) -> None:
        self.methods.add_event(spec)
        if push is not None:
            if spec.name in self.declared.pushed:
                raise ValueError(f"{spec.name}: its push is declared twice")
            self.declared.pushed[spec.name] = PushedEvent(spec, push)

    def job(self, spec: JobSpec[P], run: Callable[[Job[P]], Awaitable[int | None]]) -> None:
        if spec.kind in self.declared.jobs:
            raise ValueError(f"job {spec.kind} handled twice")
        self.declared.jobs[spec.kind] = JobHandler(spec, run)

    def every(self, seconds: float, spec: JobSpec[Tick]) -> None:
        self.declared.schedules.append(Periodic(spec.kind, seconds, spec))

    def at(
        self,
        cron: str,
        spec: JobSpec[Tick],
        *,
        timezone: str | None = None,
        grace: float = 3600.0,
    ) -> None:
        schedule = Calendar(spec.kind, cron, spec, timezone or self.timezone, grace)
        self.declared.schedules.append(schedule)

    def cleanup(self, step: Callable[[], Awaitable[None]]) -> None:
        self.declared.cleanups.append(step)

    def route(self, method: str, path: str, handler: HttpHandler) -> None:
        self.declared.routes.append(Route(method, path, handler))

    def task(self, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.declared.tasks.append(run)

    def on_start(self, hook: Callable[[], Awaitable[None]]) -> None:
        self.declared.starts.append(hook)

    def on_stop(self, hook: Callable[[], Awaitable[None]]) -> None:
        self.declared.stops.append(hook)

    def provide(self, key: PortKey[T], implementation: T) -> None:
        if key.name in self._ports:
            raise ValueError(f"port {key.name} provided twice")
        self._ports[key.name] = implementation

    def port(self, key: PortKey[T]) -> T:
        try:
            implementation: T = self._ports[key.name]
        except KeyError:
            raise LookupError(
                f"no feature installed so far provides {key.name!r}: install it earlier"
            ) from None
        return implementation
