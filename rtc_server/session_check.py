"""Sockets outlive nothing their session does not: the session check.

A revocation closes its sockets at once through the bus (:class:`kernel.bus.
SessionsRevoked`). What the bus cannot carry is caught here: a revocation published
while Redis was down and dropped from the retry queue, one made by another process
(``rtc-server remove-admin``), an account deactivated in the database. Every
``server.session_check_interval`` seconds, and at once when the bus comes back, the
sessions of this instance's authenticated sockets are checked against the database
(one query per 5,000 sessions) and the sockets of the ended ones are closed (4003).
"""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

from kernel.errors import CloseCode
from kernel.identity import Authenticator
from rtc_server.connection import Connection
from rtc_server.hub import Hub
from rtc_server.metrics import Metrics

log = logging.getLogger("rtc.sessions")


class SessionCheck:
    def __init__(
        self, hub: Hub, authenticator: Authenticator, metrics: Metrics, interval: float
    ) -> None:
        self._hub = hub
        self._authenticator = authenticator
        self._metrics = metrics
        self._interval = interval
        self._lock = asyncio.Lock()

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.check()
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("session check failed")

    async def check(self) -> int:
        """Close the sockets whose session ended; how many were closed."""
        async with self._lock:  # a restore during a round waits for it, then runs
            by_session: dict[UUID, list[Connection]] = {}
            for conn in self._hub.connections:
                identity = conn.identity
                if identity is not None:
                    by_session.setdefault(identity.session_id, []).append(conn)
            if not by_session:
                return 0
            alive = await self._authenticator.alive(by_session.keys())
            closed = 0
            for session_id in by_session.keys() - alive:
                for conn in by_session[session_id]:
                    # Still bound to that session (it may have re-authenticated since).
                    identity = conn.identity
                    if identity is not None and identity.session_id == session_id:
                        conn.close(CloseCode.SESSION_REVOKED, "session ended")
                        closed += 1
            if closed:
                self._metrics.session_check_closed.inc(closed)
                log.info("sockets of ended sessions closed", extra={"sockets": closed})
            return closed
