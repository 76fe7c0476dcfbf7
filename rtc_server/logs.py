"""Logging: one JSON object per line on stderr (default), or human-readable text.

Fields: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``event`` (the message), and
whatever the call passed in ``extra`` (``method``, ``user``, ``latency_ms`` ...).
"""

from __future__ import annotations

import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any

import orjson

from rtc_server.ratelimit import TokenBucket

# Attributes every LogRecord has; anything else came from ``extra``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update(_extra(record))
        if record.exc_info:
            entry["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        extra = " ".join(f"{k}={v}" for k, v in _extra(record).items())
        line = f"{ts} {record.levelname:<7} {record.name}: {record.getMessage()} {extra}".rstrip()
        if record.exc_info:
            line += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return line


def configure(fmt: str = "json", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The websockets library logs each handshake failure at INFO/ERROR with tracebacks
    # for clients that merely went away; our own logs say what matters.
    logging.getLogger("websockets").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # pgserver logs every initdb/pg_ctl command line and its whole output at INFO.
    logging.getLogger("pgserver").setLevel(logging.WARNING)


class LineBudget:
    """At most ``per_second`` lines a second of one kind, on average, in bursts of up to
    ``burst`` (a :class:`~rtc_server.ratelimit.TokenBucket`); the lines it refuses are
    counted and reported by the next one it lets through.

    For warnings that come with overload (a slow request each): when the server is
    slow, every request is, and a line per request would add to the load it reports,
    and bury the lines that say why.
    """

    def __init__(self, per_second: float, burst: int) -> None:
        if per_second <= 0 or burst < 1:
            raise ValueError("per_second must be positive and burst at least 1")
        self._bucket = TokenBucket(per_second, burst, 0.0)  # full from the first line
        self._refused = 0

    def take(self, now: float) -> int | None:
        """None: do not log this line (it is counted). Else log it, saying how many
        lines were left out since the last one logged (0 when none were)."""
        if self._bucket.take(now):
            self._refused += 1
            return None
        refused, self._refused = self._refused, 0
        return refused
