"""The development sender: each code goes to the log, so a developer can log in.

Refused in production (``server.environment = "production"``): a code in a log is a
password in a log.
"""

from __future__ import annotations

import logging

log = logging.getLogger("rtc.auth")


class LogSmsSender:
    async def send_code(self, phone: str, code: str, ttl_seconds: int) -> None:
        log.warning(
            "login code (development SMS sender)",
            extra={"phone": phone, "code": code, "ttl_seconds": ttl_seconds},
        )

    async def close(self) -> None:
        pass
