"""The metrics of login codes (listed in ``docs/operations.md``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from kernel.metrics import LATENCY_BUCKETS


class AuthMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.sms = Counter(
            "rtc_otp_sms_total",
            "Login codes handed to the SMS gateway, by outcome (sent; refused: the gateway"
            " said no; unavailable: no usable answer)",
            ["outcome"],
            registry=r,
        )
        self.sms_seconds = Histogram(
            "rtc_otp_sms_seconds",
            "Time of one call to the SMS gateway",
            buckets=(*LATENCY_BUCKETS, 10.0, 30.0),
            registry=r,
        )
        self.refused = Counter(
            "rtc_otp_refused_total",
            "Code requests and guesses refused by a limit, by reason (region, cooldown,"
            " phone_cap, ip_cap, prefix_cap, ip_guesses, phone_guesses)",
            ["reason"],
            registry=r,
        )
        self.wrong_guesses = Counter(
            "rtc_otp_wrong_guesses_total", "Wrong login codes presented", registry=r
        )
