"""The metrics of payments (listed in ``docs/operations.md``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from kernel.metrics import LATENCY_BUCKETS


class PaymentMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.orders = Counter(
            "rtc_payment_orders_total",
            "Payment status changes, by the status reached (created, paid, failed, "
            "expired, review, refund_pending, refunded)",
            ["status"],
            registry=r,
        )
        self.security_events = Counter(
            "rtc_payment_security_events_total",
            "Payment security events, by kind (bad_checksum, amount_mismatch, "
            "merchant_mismatch, forged_answer, unknown_order, callback_disagrees, "
            "network_refused)",
            ["kind"],
            registry=r,
        )
        self.gateway_calls = Counter(
            "rtc_payment_gateway_calls_total",
            "Calls to the payment gateway, by endpoint and outcome (ok, error)",
            ["endpoint", "outcome"],
            registry=r,
        )
        self.gateway_seconds = Histogram(
            "rtc_payment_gateway_seconds",
            "Time of one call to the payment gateway, by endpoint",
            ["endpoint"],
            buckets=(*LATENCY_BUCKETS, 10.0, 30.0),
            registry=r,
        )
