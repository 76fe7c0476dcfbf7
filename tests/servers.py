"""What every tier that runs the server needs: its settings for a test, and the login
codes the development SMS sender writes to the log (read as a developer reads them)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from rtc_server.features import Settings


class CodeLog(logging.Handler):
    """Collects the codes the development SMS sender writes to the log."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.codes: dict[str, list[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        code = getattr(record, "code", None)
        phone = getattr(record, "phone", None)
        if code is not None and phone is not None:
            self.codes.setdefault(phone, []).append(code)

    def last(self, phone: str) -> str:
        return self.codes[phone][-1]


def settings_for(dsn: str, data_dir: Path, **sections: dict[str, Any]) -> Settings:
    base: dict[str, dict[str, Any]] = {
        "server": {"host": "127.0.0.1", "port": 0, "ping_interval": 0},
        "http": {"host": "127.0.0.1", "port": 0},
        "database": {"dsn": dsn, "pool_max": 10},
        "events": {"gap_timeout": 0.05},
        # Reminders fire at wall-clock times: a test that books for tomorrow would be told
        # of it or not depending on the hour it runs. Their tests schedule them.
        "reminders": {"enabled": False},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return Settings(data_dir=data_dir, **base)  # type: ignore[arg-type]
