"""The ``[console]`` settings section: whether the admin console is served, and where
its page finds the socket port."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import field_validator

from kernel.settings import Section


class ConsoleSettings(Section):
    """The admin console (rtc_server/console): a page at /admin/ on the HTTP port."""

    # Serve the console at /admin/ on the HTTP port.
    enabled: bool = True
    # The socket port as operators' browsers reach it ("wss://api.example.com/ws"): the
    # page connects there (given to it by /admin/config.json, allowed by its
    # Content-Security-Policy). Empty: ws://<the host the page was loaded from>:<this
    # instance's socket port><server.path> (development). Required in production.
    socket_url: str = ""

    @field_validator("socket_url")
    @classmethod
    def _socket_url(cls, url: str) -> str:
        if not url:
            return url
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"{url!r}: a socket URL is ws://host[:port]/path or wss://…")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"{url!r}: no query, fragment or credentials in a socket URL")
        return url
