"""The admin console as a feature: its page on the HTTP port (``/admin/``).

The page does everything else through the socket port, as any app: it logs in with an
admin's login code and calls ``admin.*`` methods, which the server authorises itself.
Its origin (the HTTP port's) is not the socket port's: operators list it in
``server.allowed_origins`` (docs/operations.md, "The admin console").
"""

from __future__ import annotations

import asyncio
import logging

from kernel.feature import Feature, Kit
from kernel.settings import ConfigError
from recordings.settings import RecordingSettings
from rtc_server.config import ServerSettings
from rtc_server.console.settings import ConsoleSettings
from rtc_server.console.site import REQUIRED, STATIC, ConsoleSite, load_files

log = logging.getLogger("rtc.console")


class ConsoleFeature(Feature):
    name = "console"
    settings = ConsoleSettings

    async def install(self, kit: Kit) -> None:
        s = kit.settings(ConsoleSettings)
        if not s.enabled:
            return
        if kit.production and not s.socket_url:
            raise ConfigError(
                "console.socket_url is required in production: the wss:// address of the"
                " socket port as operators' browsers reach it (or console.enabled = false)"
            )
        files = await asyncio.to_thread(load_files, STATIC)
        missing = [name for name in REQUIRED if name not in files]
        if missing:
            raise ConfigError(
                f"the admin console's files are missing from the installed package"
                f" ({', '.join(missing)} under {STATIC}): reinstall it, or set"
                " console.enabled = false"
            )
        if not kit.settings(ServerSettings).allowed_origins:
            log.info(
                "server.allowed_origins is empty: the admin console (/admin/ on the HTTP"
                " port) cannot open a socket until its origin is listed there"
            )
        self.site = ConsoleSite(files, socket_url=s.socket_url)
        kit.route("GET", "/admin", self.site.redirect)
        kit.route("GET", "/admin/{path:.*}", self.site.serve)
        kit.on_start(self._started)
        self._kit = kit

    async def _started(self) -> None:
        kit = self._kit
        try:
            # Where recordings.link points <audio> at (its public_url, else this port).
            recordings = kit.settings(RecordingSettings).public_url or kit.http_url()
        except LookupError:  # a server without recordings
            recordings = ""
        self.site.listening(kit.socket_url(), [recordings])
