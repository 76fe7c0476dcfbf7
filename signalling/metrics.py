"""The metrics of masked calls (listed in ``docs/operations.md``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class CallMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.calls_started = Counter("rtc_calls_started_total", "Calls started", registry=r)
        self.call_transitions = Counter(
            "rtc_call_transitions_total",
            "Call state changes, by action (accept, reject, cancel, hangup, connect, "
            "time_out, disconnect)",
            ["action"],
            registry=r,
        )
        self.calls_refused = Counter(
            "rtc_calls_refused_total",
            "calls.start refused by a rule, by reason (busy, rate, booking_status ...)",
            ["reason"],
            registry=r,
        )
        self.call_signals = Counter(
            "rtc_call_signals_total",
            "calls.signal messages, by outcome (relayed, dropped: address privacy)",
            ["outcome"],
            registry=r,
        )
