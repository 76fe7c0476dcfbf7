"""The admin console's page as shipped: its copy of the JavaScript client, its files
(nothing inline the Content-Security-Policy would have to allow), the headers and the
socket URL it is served with, and its settings."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from rtc_server.console.settings import ConsoleSettings
from rtc_server.console.site import (
    REQUIRED,
    STATIC,
    load_files,
    origin_of,
    page_host,
    security_headers,
    socket_url_for,
)

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "js" / "src" / "client.js"


def test_the_console_ships_the_javascript_client_unchanged() -> None:
    """The page imports the client of clients/js, not one of its own: scripts/sync-console
    copies it, and this fails until it has."""
    vendored = STATIC / "vendor" / "rtc-client.js"
    assert vendored.read_bytes() == CLIENT.read_bytes(), "run scripts/sync-console"
    imports = re.findall(
        r"""^\s*import\s.*?from\s+["'](.+?)["']""", (STATIC / "app.js").read_text(), re.M
    )
    assert "./vendor/rtc-client.js" in imports


def test_every_file_the_page_needs_is_served_with_its_type() -> None:
    files = load_files(STATIC)
    assert set(REQUIRED) <= set(files)
    assert files["index.html"].content_type == "text/html; charset=utf-8"
    assert files["app.js"].content_type == "text/javascript; charset=utf-8"
    assert files["style.css"].content_type == "text/css; charset=utf-8"
    # Every module a script imports is shipped (a missing one would break the page).
    for name, file in files.items():
        if not name.endswith(".js"):
            continue
        for target in re.findall(r"""\bfrom\s+["'](\./[^"']+)["']""", file.body.decode()):
            resolved = (Path(name).parent / target).as_posix().removeprefix("./")
            assert resolved in files, f"{name} imports {target}, which is not shipped"


def test_the_page_has_nothing_inline() -> None:
    """script-src and style-src are 'self' only: no inline script, style or handler, and
    no HTML parsed from strings (the views build elements, text stays text)."""
    page = (STATIC / "index.html").read_text()
    for tag in re.findall(r"<script\b[^>]*>", page):
        assert re.search(r'\bsrc="[^"]+"', tag), tag
    assert "<style" not in page
    assert not re.search(r"\sstyle=", page)
    assert not re.search(r"\son[a-z]+=", page)
    for path in STATIC.glob("*.js"):
        source = path.read_text()
        for risky in (
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "eval(",
            "new Function",
            "document.write",
        ):
            assert risky not in source, f"{path.name}: {risky}"
        assert not re.search(r"\blocalStorage\s*[.\[]", source), f"{path.name}: localStorage"


def test_the_headers_of_every_console_answer() -> None:
    headers = security_headers(
        socket_origin="wss://api.example.com", media_origins=["https://media.example.com"]
    )
    policy = dict(
        part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";")
    )
    assert policy == {
        "default-src": "'none'",
        "script-src": "'self'",
        "style-src": "'self'",
        "connect-src": "'self' wss://api.example.com",
        "img-src": "'self' data:",
        "media-src": "'self' https://media.example.com",
        "frame-ancestors": "'none'",
        "base-uri": "'none'",
        "form-action": "'none'",
    }
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1:8766", "127.0.0.1"),
        ("admin.example.com", "admin.example.com"),
        ("[::1]:8766", "[::1]"),
        ("evil.example.com; script-src *", None),
        ("a b", None),
        ("", None),
    ],
)
def test_the_page_host_comes_from_a_host_header_or_not_at_all(
    host: str, expected: str | None
) -> None:
    assert page_host(host) == expected


def test_the_socket_url_is_the_configured_one_or_the_socket_port_on_the_pages_host() -> None:
    listening = "ws://127.0.0.1:41234/ws"
    assert socket_url_for("", listening, "localhost") == "ws://localhost:41234/ws"
    configured = "wss://api.example.com/ws"
    assert socket_url_for(configured, listening, "localhost") == configured
    assert origin_of("wss://API.example.com:8443/ws") == "wss://api.example.com:8443"


@pytest.mark.parametrize(
    "url",
    ["https://api.example.com/ws", "api.example.com/ws", "wss:///ws", "wss://h/ws?token=x"],
)
def test_a_socket_url_is_a_websocket_url_without_secrets(url: str) -> None:
    with pytest.raises(ValidationError, match="socket_url"):
        ConsoleSettings(socket_url=url)


def test_the_package_ships_the_static_files() -> None:
    """pip install (not only the editable one) puts them in the package: package-data
    names every folder of static/ (tests/e2e/test_console.py builds a wheel)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["rtc_server.console"]
    package = STATIC.parent
    for path in STATIC.rglob("*"):
        if path.is_file():
            relative = path.relative_to(package)
            assert any(relative.match(p) for p in patterns), f"{relative} is not package data"
