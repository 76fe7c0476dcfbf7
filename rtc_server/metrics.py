"""Prometheus metrics of one server instance (served on the HTTP port at ``/metrics``).

Each :class:`Metrics` has its own registry, so several servers can live in one
process (the tests do). Names and meanings are listed in ``docs/operations.md``.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    GC_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from kernel.metrics import LATENCY_BUCKETS as _LATENCY_BUCKETS
from kernel.metrics import KernelMetrics
from rtc_server.rpc_stats import RpcStats


class Metrics(KernelMetrics):
    def __init__(self) -> None:
        super().__init__(CollectorRegistry(auto_describe=True))
        r = self.registry
        # The process's CPU, memory and descriptors, and the garbage collector's
        # collections by generation (process_*, python_gc_*).
        r.register(PROCESS_COLLECTOR)
        r.register(GC_COLLECTOR)
        self.sockets_open = Gauge("rtc_sockets_open", "Open websockets", registry=r)
        self.sockets_authenticated = Gauge(
            "rtc_sockets_authenticated", "Websockets bound to a user", registry=r
        )
        self.socket_closes = Counter(
            "rtc_socket_closes_total", "Websockets closed, by close code", ["code"], registry=r
        )
        self.handshakes_refused = Counter(
            "rtc_handshakes_refused_total",
            "Sockets refused by admission, by reason (origin: a browser origin not allowed;"
            " anonymous_cap: too many sockets not logged in from one address)",
            ["reason"],
            registry=r,
        )
        self.session_check_closed = Counter(
            "rtc_session_check_closed_total",
            "Websockets closed by the session check (their session ended while the bus"
            " did not say so)",
            registry=r,
        )
        # rtc_rpc_requests_total and rtc_rpc_latency_seconds, by method.
        self.rpc = RpcStats(_LATENCY_BUCKETS)
        r.register(self.rpc)
        self.rpc_deadlines = Counter(
            "rtc_rpc_deadline_exceeded_total",
            "Requests cancelled at their deadline (server.request_deadline), by method",
            ["method"],
            registry=r,
        )
        self.rpc_errors = Counter(
            "rtc_rpc_errors_total", "Error responses, by error name", ["error"], registry=r
        )
        self.events_delivered = Counter(
            "rtc_events_delivered_total", "Event frames written to sockets", ["path"], registry=r
        )
        self.event_delivery_lag = Histogram(
            "rtc_event_delivery_lag_seconds",
            "Time from a publish call to its frames being written to local sockets",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.event_gap_fills = Counter(
            "rtc_event_gap_fills_total", "Live event gaps closed by reading the log", registry=r
        )
        self.events_pruned = Counter(
            "rtc_events_pruned_total", "Events deleted from the log by age or count", registry=r
        )
        self.send_drops = Counter(
            "rtc_send_queue_drops_total",
            "Sockets closed because their send buffer overflowed (slow consumers)",
            registry=r,
        )
        # The bus between instances (Redis); constant on one instance without Redis.
        self.bus_up = Gauge(
            "rtc_bus_up",
            "1 while the bus between instances works (always 1 in process)",
            registry=r,
        )
        self.bus_up.set(1)
        self.bus_reconnects = Counter(
            "rtc_bus_reconnects_total",
            "Times the Redis bus came back after an outage",
            registry=r,
        )
        self.bus_sent = Counter(
            "rtc_bus_messages_sent_total", "Messages sent to other instances", registry=r
        )
        self.bus_received = Counter(
            "rtc_bus_messages_received_total",
            "Messages received from other instances",
            registry=r,
        )
        self.bus_send_failures = Counter(
            "rtc_bus_send_failures_total",
            "Messages not sent to other instances (kept to resend; the log has the events)",
            registry=r,
        )
        self.bus_retry_dropped = Counter(
            "rtc_bus_retry_dropped_total",
            "Unsent messages dropped from the full resend queue (clients catch up from the log)",
            registry=r,
        )
        self.bus_unreadable = Counter(
            "rtc_bus_unreadable_total", "Bus messages that could not be decoded", registry=r
        )
        self.bus_catch_ups = Counter(
            "rtc_bus_catch_ups_total",
            "Sockets found behind the log after the bus came back, and caught up",
            registry=r,
        )
        self.presence_users = Gauge(
            "rtc_presence_users", "Users with a socket on this instance", registry=r
        )
        self.presence_instances = Gauge(
            "rtc_presence_instances", "Instances with a live lease, this one included", registry=r
        )
        self.presence_instances.set(1)
        self.pool_size = Gauge("rtc_db_pool_size", "Database pool connections", registry=r)
        self.pool_idle = Gauge("rtc_db_pool_idle", "Idle database pool connections", registry=r)
        self.pool_waiting = Gauge(
            "rtc_db_pool_waiting", "Coroutines waiting for a database connection", registry=r
        )
        self.pool_max = Gauge("rtc_db_pool_max", "Database pool maximum size", registry=r)

    def bind_pool(self, stats: Callable[[], object]) -> None:
        """Read the pool's figures at scrape time rather than tracking them."""

        def reader(attr: str) -> Callable[[], float]:
            return lambda: float(getattr(stats(), attr))

        self.pool_size.set_function(reader("size"))
        self.pool_idle.set_function(reader("idle"))
        self.pool_waiting.set_function(reader("waiting"))
        self.pool_max.set_function(reader("max_size"))

    def render(self) -> bytes:
        return generate_latest(self.registry)
