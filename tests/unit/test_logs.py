from __future__ import annotations

import logging

import orjson

from rtc_server.logs import JsonFormatter, TextFormatter


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
