from __future__ import annotations

import logging

import orjson
import pytest

from rtc_server.logs import JsonFormatter, LineBudget, TextFormatter


def record(msg: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("rtc.rpc", logging.WARNING, __file__, 1, msg, None, None)
    rec.__dict__.update(extra)
    return rec


def test_json_line_has_the_request_fields() -> None:
    line = JsonFormatter().format(record("request", method="auth.refresh", user=7, latency_ms=1.25))
    entry = orjson.loads(line)
    assert "\n" not in line
    assert entry["level"] == "warning" and entry["event"] == "request"
    assert (entry["method"], entry["user"], entry["latency_ms"]) == ("auth.refresh", 7, 1.25)
    assert entry["ts"].endswith("+00:00")


def test_json_line_carries_the_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        rec = record("failed")
        rec.exc_info = sys.exc_info()
    entry = orjson.loads(JsonFormatter().format(rec))
    assert "ValueError: boom" in entry["exception"]


def test_unencodable_extra_values_do_not_break_logging() -> None:
    entry = orjson.loads(JsonFormatter().format(record("x", thing=object())))
    assert entry["thing"].startswith("<object")


def test_text_line_is_for_humans() -> None:
    line = TextFormatter().format(record("request", method="m", user=1))
    assert "WARNING" in line and "request" in line and "method=m" in line


def test_line_budget_lets_a_burst_through_then_a_steady_rate() -> None:
    budget = LineBudget(per_second=4, burst=3)
    assert [budget.take(100.0) for _ in range(5)] == [0, 0, 0, None, None]
    # A quarter of a second earns one line, which reports the two left out.
    assert budget.take(100.25) == 2
    assert budget.take(100.25) is None
    # A quiet minute refills the burst, not more.
    assert [budget.take(160.0) for _ in range(4)] == [1, 0, 0, None]


def test_line_budget_over_a_storm_logs_about_its_rate() -> None:
    budget = LineBudget(per_second=10, burst=50)
    # 1,000 slow requests a second for 10 s: 50 + 10 * 10 lines, and every left-out
    # one is reported by a line that follows it (the last ones by the next line).
    answers = [budget.take(i / 1000) for i in range(10_000)]
    logged = [a for a in answers if a is not None]
    assert 145 <= len(logged) <= 151
    assert sum(logged) == 10_000 - len(logged) - _trailing_refused(answers)


def _trailing_refused(answers: list[int | None]) -> int:
    count = 0
    for answer in reversed(answers):
        if answer is not None:
            break
        count += 1
    return count


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 5), (1, 0)])
def test_line_budget_refuses_nonsense(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        LineBudget(rate, burst)
