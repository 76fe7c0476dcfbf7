"""The console's page as the HTTP port serves it: the shipped files, read once, and the
headers every ``/admin/`` answer carries.

The page is static: ``index.html`` loads ``app.js`` (an ES module) and ``style.css``;
``config.json`` tells it where the socket port is. Nothing inline, so the
Content-Security-Policy allows scripts and styles from this origin only, connections
to this origin and the socket port's, audio from this origin and the recordings'
download address, and no framing (``frame-ancestors 'none'``, ``X-Frame-Options``).
A file not shipped is 404; the lookup is by exact name, never a path on disk.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import orjson
from aiohttp import web

STATIC = Path(__file__).parent / "static"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

# Files the page cannot work without: a package installed without its data fails at
# start rather than serving a broken page.
REQUIRED = ("index.html", "app.js", "style.css", "vendor/rtc-client.js")

# A Host header: a name or IPv4 address, or an IPv6 address in brackets, and a port.
_HOST = re.compile(r"(?P<host>[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


def load_files(folder: Path) -> dict[str, StaticFile]:
    """Every file of ``folder`` the console serves, by its path relative to it."""
    files: dict[str, StaticFile] = {}
    for path in sorted(folder.rglob("*")):
        kind = CONTENT_TYPES.get(path.suffix)
        if kind is None or not path.is_file():
            continue
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        files[path.relative_to(folder).as_posix()] = StaticFile(body, kind, etag)
    return files


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url`` (as CSP sources and browsers write origins)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.lower()}"


def page_host(host_header: str) -> str | None:
    """The host of a Host header, without its port; None when it is not a host."""
    match = _HOST.fullmatch(host_header)
    return match["host"] if match else None


def socket_url_for(configured: str, listening: str, host: str) -> str:
    """The socket URL the page gets: the configured one, else the socket port on the
    host the page was loaded from (``listening``: ``ws://127.0.0.1:<port><path>``)."""
    if configured:
        return configured
    parts = urlsplit(listening)
    return f"ws://{host}:{parts.port}{parts.path}"


def security_headers(*, socket_origin: str, media_origins: Iterable[str]) -> dict[str, str]:
    """The headers of every ``/admin/`` answer."""
    media = " ".join(dict.fromkeys(["'self'", *media_origins]))
    policy = "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"connect-src 'self' {socket_origin}",
            "img-src 'self' data:",
            f"media-src {media}",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )
    return {
        "Content-Security-Policy": policy,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    }


class ConsoleSite:
    """The ``/admin/`` routes. ``listening`` (at start) gives the socket port's own URL
    and where recordings are downloaded from."""

    def __init__(self, files: Mapping[str, StaticFile], *, socket_url: str) -> None:
        self._files = files
        self._configured = socket_url
        self._listening = ""
        self._media: tuple[str, ...] = ()

    def listening(self, socket_url: str, media_urls: Iterable[str]) -> None:
        self._listening = socket_url
        self._media = tuple(origin_of(url) for url in media_urls if url)

    async def redirect(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPPermanentRedirect("/admin/")

    async def serve(self, request: web.Request) -> web.StreamResponse:
        host = page_host(request.host)
        if host is None:
            return web.Response(status=400, text="bad Host header\n")
        socket = socket_url_for(self._configured, self._listening, host)
        headers = security_headers(socket_origin=origin_of(socket), media_origins=self._media)
        name = request.match_info["path"] or "index.html"
        if name == "config.json":
            # Where the page's client connects; nothing secret, never cached.
            headers["Cache-Control"] = "no-store"
            body = orjson.dumps({"socketUrl": socket})
            return web.Response(body=body, content_type="application/json", headers=headers)
        file = self._files.get(name)
        if file is None:
            return web.Response(status=404, text="not found\n", headers=headers)
        # Revalidated on each load (a new version shows at once), 304 when unchanged.
        headers.update({"ETag": file.etag, "Cache-Control": "no-cache"})
        if file.etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        headers["Content-Type"] = file.content_type
        return web.Response(body=file.body, headers=headers)
