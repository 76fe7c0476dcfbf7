"""The metrics of the kernel's own parts, and what every feature's metrics share.

One :class:`prometheus_client.CollectorRegistry` per server instance (several servers
can live in one process: the tests run clusters so). The core adds its socket, bus and
pool metrics (:class:`rtc_server.metrics.Metrics`); each feature registers its own set
in the same registry when it is installed. Names and meanings are listed in
``docs/operations.md``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

# Seconds: from half a millisecond (a local request) to 5 s (a stalled database).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class KernelMetrics:
    """Events written to the log and jobs run: what the outbox, the publisher and the
    job worker count."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        self.events_published = Counter(
            "rtc_events_published_total", "Events stored in the log (one per recipient)", registry=r
        )
        self.jobs_finished = Counter(
            "rtc_jobs_finished_total",
            "Job attempts by kind and outcome (done, retried, failed)",
            ["kind", "outcome"],
            registry=r,
        )
        self.job_items = Counter(
            "rtc_job_items_total",
            "Items the runs of a job touched (reminders sent ...), by kind",
            ["kind"],
            registry=r,
        )
        self.job_seconds = Histogram(
            "rtc_job_seconds",
            "Time a job's handler ran, by kind",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
