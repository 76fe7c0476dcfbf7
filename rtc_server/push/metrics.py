"""The metrics of push delivery (listed in ``docs/operations.md``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from kernel.metrics import LATENCY_BUCKETS


class PushMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.push_attempts = Counter(
            "rtc_push_attempts_total",
            "Pushes handed to a provider, by provider and outcome "
            "(sent, retry, token_invalid, refused, auth_error)",
            ["provider", "outcome"],
            registry=r,
        )
        self.push_latency = Histogram(
            "rtc_push_latency_seconds",
            "Time of one provider call, by provider",
            ["provider"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.push_skipped = Counter(
            "rtc_push_skipped_total",
            "Pushes not sent, by reason (acknowledged, category_off, expired, device_gone)",
            ["reason"],
            registry=r,
        )
