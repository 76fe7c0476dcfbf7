"""The metrics of recorded calls (listed in ``docs/operations.md``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class RecordingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.recordings_active = Gauge(
            "rtc_recordings_active", "Recorded calls whose media this instance carries", registry=r
        )
        self.recordings_finished = Counter(
            "rtc_recordings_finished_total",
            "Recordings finished, by state (ready, failed)",
            ["state"],
            registry=r,
        )
        self.recording_failures = Counter(
            "rtc_recording_failures_total",
            "Legs whose file could not be written (disk full, I/O error)",
            registry=r,
        )
        self.recording_packets = Counter(
            "rtc_recording_packets_total",
            "RTP packets of finished recorded calls, by outcome: received from a party, "
            "lost on the way in, forwarded to the other party, dropped (its sender fell behind)",
            ["outcome"],
            registry=r,
        )
        self.recording_downloads = Counter(
            "rtc_recording_downloads_total",
            "Recording download requests, by outcome (ok, refused, gone)",
            ["outcome"],
            registry=r,
        )
