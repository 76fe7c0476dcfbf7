"""How a feature installs itself: one module per feature declares everything it adds.

A feature (bookings, calls, recordings, push, payments …) is a class with a ``name``,
an optional settings section (read from ``[name]`` in ``config.toml`` and from
``RTC_NAME__KEY``) and an ``install`` method that receives a :class:`Kit`: the
kernel's shared parts and the ways to add methods, typed events (with their push
rendering), job handlers and schedules, HTTP routes, background tasks, clean-up steps,
and start and stop hooks. The composition root (:mod:`rtc_server.app`) builds the
kernel, installs each feature of :data:`rtc_server.features.FEATURES` in order, then
starts; a new feature touches no core module::

    class RatingsFeature(Feature):
        name = "ratings"
        settings = RatingSettings

        async def install(self, kit: Kit) -> None:
            service = RatingService(kit.db, kit.outbox, kit.clock, kit.settings(RatingSettings))
            service.register(kit.methods)
            kit.event(RATING_RECEIVED, push=rating_push)

Features that need each other meet through typed ports (:class:`PortKey`): the one
installed first provides, the later one asks (recordings asks calls for
:data:`signalling.ports.CALLS`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar
from uuid import UUID

from prometheus_client import CollectorRegistry

from kernel.clock import Clock
from kernel.devices import Devices
from kernel.events import EventSpec, M, PushedEvent, PushRenderer
from kernel.jobs import Job, JobQueue, JobSpec, Tick
from kernel.jobs.spec import P
from kernel.outbox import Outbox
from kernel.publisher import EventPublisher
from kernel.rpc.registry import MethodRegistry
from kernel.settings import Section
from kernel.signals import Signals
from storage.database import Database

if TYPE_CHECKING:  # the HTTP port is the core's (aiohttp); features only name handlers
    from aiohttp import web

    HttpHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
else:
    HttpHandler = Callable[[Any], Awaitable[Any]]

S = TypeVar("S", bound=Section)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PortKey(Generic[T]):
    """The name of a port one feature provides and others use, with its type."""

    name: str


class Kit(Protocol):
    """What a feature gets to install itself with."""

    @property
    def db(self) -> Database: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def outbox(self) -> Outbox:
        """Events written in the feature's own transactions."""
        ...

    @property
    def publisher(self) -> EventPublisher:
        """Events published outside a transaction (one to many users)."""
        ...

    @property
    def jobs(self) -> JobQueue: ...

    @property
    def signals(self) -> Signals:
        """Instance-wide signals (cache invalidation and the like)."""
        ...

    @property
    def devices(self) -> Devices:
        """Live messages to one socket wherever it is."""
        ...

    @property
    def methods(self) -> MethodRegistry:
        """Register RPC methods here (``registry.add``)."""
        ...

    @property
    def metrics(self) -> CollectorRegistry:
        """The instance's Prometheus registry: register the feature's metrics in it."""
        ...

    @property
    def production(self) -> bool:
        """``server.environment`` is "production": refuse development-only parts."""
        ...

    @property
    def data_dir(self) -> Path:
        """The instance's data folder (files a feature keeps locally go under it)."""
        ...

    @property
    def timezone(self) -> str:
        """The IANA time zone business rules run in (``database.timezone``)."""
        ...

    @property
    def pushed_events(self) -> Mapping[str, PushedEvent[Any]]:
        """Every event that goes out as a push when unacknowledged, by name (filled as
        features install; read it when pushes are rendered, not at install)."""
        ...

    def settings(self, section: type[S]) -> S:
        """The feature's settings section (its class, as declared)."""
        ...

    async def secret(self, name: str, configured: str = "") -> bytes:
        """``configured`` if set, else a random secret kept in the database under
        ``name`` (the same on every instance)."""
        ...

    async def online(self, user_ids: Iterable[int]) -> set[int]:
        """Those of ``user_ids`` with a socket on any instance."""
        ...

    def http_url(self) -> str:
        """Where this instance's HTTP port listens (after start)."""
        ...

    def socket_url(self) -> str:
        """Where this instance's socket port listens, ``ws://127.0.0.1:<port><path>``
        (after start)."""
        ...

    def client_address(self, peer: str | None, forwarded_for: Sequence[str]) -> str | None:
        """The client of an HTTP request behind ``server.trusted_proxies`` (``peer``: the
        TCP peer, ``forwarded_for``: the X-Forwarded-For header values)."""
        ...

    async def revoke(self, user_id: int, session_ids: Sequence[UUID], reason: str) -> None:
        """Close the user's sockets of these login sessions, on every instance."""
        ...

    def event(self, spec: EventSpec[M], *, push: PushRenderer[M] | None = None) -> None:
        """Declare an event users get (documented in ``rpc.discover``); with ``push``,
        its unacknowledged copies go out as push notifications rendered by it."""
        ...

    def job(self, spec: JobSpec[P], run: Callable[[Job[P]], Awaitable[int | None]]) -> None:
        """Run jobs of ``spec`` with ``run`` (on any instance's worker)."""
        ...

    def every(self, seconds: float, spec: JobSpec[Tick]) -> None:
        """Enqueue a job of ``spec`` once every ``seconds`` across all instances."""
        ...

    def at(
        self,
        cron: str,
        spec: JobSpec[Tick],
        *,
        timezone: str | None = None,
        grace: float = 3600.0,
    ) -> None:
        """Enqueue a job of ``spec`` once, across all instances, at each time the cron
        expression names in ``timezone`` (default :attr:`timezone`); a slot missed during
        downtime runs when an instance is back if it is less than ``grace`` seconds old."""
        ...

    def cleanup(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run ``step`` in every round of housekeeping (keep growing tables bounded)."""
        ...

    def route(self, method: str, path: str, handler: HttpHandler) -> None:
        """Serve ``handler`` on the HTTP port."""
        ...

    def task(self, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``run()`` from start until stop (it is cancelled at stop)."""
        ...

    def on_start(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run ``hook`` once both ports listen."""
        ...

    def on_stop(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run ``hook`` at stop, after the sockets closed (features stop in reverse
        order of installation)."""
        ...

    def provide(self, key: PortKey[T], implementation: T) -> None:
        """Offer a port to the features installed after this one."""
        ...

    def port(self, key: PortKey[T]) -> T:
        """A port an earlier feature provided."""
        ...


class Feature:
    """A part of the product, installed by the composition root (one instance per
    server: it may keep what it built, for tests and for its stop hooks)."""

    name: ClassVar[str]
    # Its settings section, under ``[name]`` (None: it has no settings).
    settings: ClassVar[type[Section] | None] = None

    async def install(self, kit: Kit) -> None:
        raise NotImplementedError
