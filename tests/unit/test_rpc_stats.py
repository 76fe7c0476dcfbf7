from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from rtc_server.rpc_stats import RpcStats


def test_counts_and_cumulative_buckets() -> None:
    stats = RpcStats((0.001, 0.01, 0.1))
    for seconds in (0.0005, 0.001, 0.005, 0.05, 3.0):
        stats.observe("auth.refresh", seconds)
    stats.observe("system.ping", 0.0001)
    registry = CollectorRegistry()
    registry.register(stats)
    text = generate_latest(registry).decode()
    assert 'rtc_rpc_requests_total{method="auth.refresh"} 5.0' in text
    assert 'rtc_rpc_requests_total{method="system.ping"} 1.0' in text
    # le is inclusive: 0.001 falls in the 0.001 bucket.
    assert 'rtc_rpc_latency_seconds_bucket{le="0.001",method="auth.refresh"} 2.0' in text
    assert 'rtc_rpc_latency_seconds_bucket{le="0.01",method="auth.refresh"} 3.0' in text
    assert 'rtc_rpc_latency_seconds_bucket{le="0.1",method="auth.refresh"} 4.0' in text
    assert 'rtc_rpc_latency_seconds_bucket{le="+Inf",method="auth.refresh"} 5.0' in text
    assert 'rtc_rpc_latency_seconds_count{method="auth.refresh"} 5.0' in text
    assert 'rtc_rpc_latency_seconds_sum{method="auth.refresh"} 3.0565' in text
