"""deploy/ for real: the shipped nginx site (deploy/nginx/buildxpert.conf, with its
addresses, ports, certificate and log paths swapped for the test's, nothing else)
terminating TLS with a throwaway certificate in front of two instances on one
PostgreSQL and one Redis. Through it, over wss://: logins, a booking, a resume, an
instance stopping under its clients; the client addresses the instances see; which
HTTP routes are public. And the systemd environment example is a production
configuration that starts.

Addresses on loopback (Linux routes all of 127.0.0.0/8 there): the instances listen
on 127.0.0.1 and trust it as their proxy, nginx listens on 127.0.0.2 and reaches the
instances from 127.0.0.1, clients connect from 127.0.0.3 and 127.0.0.4. So the address
nginx appends to X-Forwarded-For is not one the instances trust, as in production.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import os
import re
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import BaseModel
from yarl import URL

from kernel.clock import FakeClock
from rtc_server.app import App, check_production
from rtc_server.client import RtcClient
from rtc_server.config import CoreSettings, load_settings
from rtc_server.features import Settings
from signalling.settings import CallSettings
from tests.events import Loose, loose
from tests.servers import CodeLog

from .conftest import Cluster
from .market import home_address, key, later, listing, next_of

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SITE = DEPLOY / "nginx" / "buildxpert.conf"
UNIT = DEPLOY / "systemd" / "buildxpert-rtc@.service"
ENV_EXAMPLE = DEPLOY / "systemd" / "buildxpert-rtc.env.example"
INSTANCE_EXAMPLE = DEPLOY / "systemd" / "instance.env.example"

INSTANCES = "127.0.0.1"  # where the instances listen, and nginx reaches them from
NGINX = "127.0.0.2"  # where nginx listens
CUSTOMER = "127.0.0.3"  # where clients connect from
PROVIDER = "127.0.0.4"
METRICS_TOKEN = "metrics-token-of-the-deploy-test-0123456789"


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"  # Debian's, outside a user's PATH
    return found


# -- the shipped site, rendered for the test -------------------------------------------


def _swap(text: str, pattern: str, new: Callable[[re.Match[str]], str], *, least: int) -> str:
    result, count = re.subn(pattern, new, text, flags=re.MULTILINE)
    assert count >= least, f"{SITE} no longer has {pattern!r}: update this test with it"
    return result


def _upstream(site: str, name: str, addresses: Sequence[str]) -> str:
    """The upstream ``name`` with one ``server`` line per address, each with the
    parameters of the shipped file's first one."""
    block = re.search(rf"^upstream {name} \{{\n(.*?)^\}}", site, re.MULTILINE | re.DOTALL)
    assert block is not None, f"{SITE} no longer has upstream {name}"
    line = re.compile(r"^(\s*)server (\S+)([^;\n]*);\n", re.MULTILINE)
    first = line.search(block.group(1))
    assert first is not None, f"upstream {name} of {SITE} lists no server"
    indent, _, parameters = first.groups()
    servers = "".join(f"{indent}server {a}{parameters};\n" for a in addresses)
    body = line.sub("", block.group(1))
    body = body[: first.start()] + servers + body[first.start() :]
    return site[: block.start(1)] + body + site[block.end(1) :]


def render_site(
    site: str,
    *,
    sockets: Sequence[int],
    http: Sequence[int],
    tls_port: int,
    plain_port: int,
    certificate: Path,
    private_key: Path,
    logs: Path,
) -> str:
    """The shipped site with the test's upstream servers, listeners, certificate and
    logs; every other line as shipped."""
    site = _upstream(site, "buildxpert_sockets", [f"{INSTANCES}:{p}" for p in sockets])
    site = _upstream(site, "buildxpert_http", [f"{INSTANCES}:{p}" for p in http])
    site = _swap(site, r"^\s*listen \[::\]:\d+[^;\n]*;\n", lambda m: "", least=0)  # IPv4 only
    site = _swap(
        site, r"^(\s*)listen 443 ssl;", lambda m: f"{m[1]}listen {NGINX}:{tls_port} ssl;", least=1
    )
    site = _swap(
        site, r"^(\s*)listen 80;", lambda m: f"{m[1]}listen {NGINX}:{plain_port};", least=1
    )
    site = _swap(
        site,
        r"^(\s*)ssl_certificate /\S+;",
        lambda m: f"{m[1]}ssl_certificate {certificate};",
        least=1,
    )
    site = _swap(
        site,
        r"^(\s*)ssl_certificate_key /\S+;",
        lambda m: f"{m[1]}ssl_certificate_key {private_key};",
        least=1,
    )
    site = _swap(
        site, r"^(\s*)access_log /\S+", lambda m: f"{m[1]}access_log {logs / 'access.log'}", least=1
    )
    site = _swap(
        site,
        r"^(\s*)error_log /\S+",
        lambda m: f"{m[1]}error_log {logs / 'site-error.log'}",
        least=1,
    )
    directives = [ln for ln in site.splitlines() if not ln.lstrip().startswith("#")]
    left = [ln for ln in directives if re.search(r"/etc/|/var/log/", ln)]
    assert not left, f"production paths left in the rendered site: {left}"
    return site


def main_config(directory: Path, site: Path) -> str:
    """What Debian's /etc/nginx/nginx.conf gives the site (its http block includes
    sites-enabled/*), with every path in ``directory``."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers as nobody cannot enter tmp
    temp = "".join(
        f"    {kind}_temp_path {directory / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}worker_processes 1;\n"
        f"error_log {directory / 'error.log'} notice;\n"
        "events { worker_connections 256; }\n"
        "http {\n"
        "    sendfile on;\n"
        "    default_type application/octet-stream;\n"
        f"    access_log {directory / 'default-access.log'};\n"
        f"{temp}"
        f"    include {site};\n"
        "}\n"
    )


def throwaway_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for nginx's address, and its key."""
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "buildxpert deploy test")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(NGINX))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(private, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# -- nginx in front of two instances ---------------------------------------------------


@dataclass
class Front:
    """The instances behind nginx, and clients of nginx from the addresses they pick."""

    apps: list[App]
    code_log: CodeLog
    tls: ssl.SSLContext
    tls_port: int
    plain_port: int
    phones: Iterator[int] = field(default_factory=lambda: iter(range(9_100_000_000, 9_200_000_000)))
    opened: list[RtcClient] = field(default_factory=list)

    @property
    def wss(self) -> str:
        return f"wss://{NGINX}:{self.tls_port}/ws"

    @property
    def https(self) -> str:
        return f"https://{NGINX}:{self.tls_port}"

    def _socket(self, source: str) -> dict[str, Any]:
        # proxy=None: no HTTPS_PROXY of the environment between the client and nginx.
        return {"ssl": self.tls, "local_addr": (source, 0), "proxy": None}

    async def connect(self, source: str, headers: Mapping[str, str] | None = None) -> RtcClient:
        client = await RtcClient.connect(
            self.wss, additional_headers=headers, **self._socket(source)
        )
        self.opened.append(client)
        return client

    async def reconnect(self, client: RtcClient, source: str) -> RtcClient:
        """``client``'s socket dropped; a new one through nginx resumes after its last seq."""
        resumed = await client.reconnect(self.wss, **self._socket(source))
        self.opened.append(resumed)
        return resumed

    async def login(
        self, source: str, role: str, name: str, headers: Mapping[str, str] | None = None
    ) -> tuple[RtcClient, int]:
        phone = str(next(self.phones))
        client = await self.connect(source, headers)
        await client.call("auth.requestOtp", {"phone": phone, "role": role})
        code = self.code_log.last("+91" + phone)
        tokens = await client.login(phone, role, code, fullName=name)
        return client, int(tokens["user"]["id"])

    def http(self, source: str) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(ssl=self.tls, local_addr=(source, 0))
        return aiohttp.ClientSession(connector=connector)

    def holders(self, user_id: int) -> list[App]:
        """The instances holding a socket of ``user_id``."""
        return [app for app in self.apps if app.hub.sockets_of(user_id)]

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.opened), return_exceptions=True)


@pytest.fixture
def nginx() -> str:
    binary = nginx_binary()
    if binary is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx; .ci/run does)")
    return binary


@pytest.fixture
async def front(
    nginx: str, cluster: Cluster, code_log: CodeLog, tmp_path: Path
) -> AsyncIterator[Front]:
    clients = await cluster(
        2,
        server={"trusted_proxies": [f"{INSTANCES}/32"]},
        http={"metrics_token": METRICS_TOKEN},
    )
    apps = [c.app for c in clients]
    directory = tmp_path / "nginx"
    directory.mkdir()
    certificate, private_key = throwaway_certificate(directory)
    tls_port, plain_port = free_port(NGINX), free_port(NGINX)
    site = directory / "buildxpert.conf"
    site.write_text(
        render_site(
            SITE.read_text(),
            sockets=[app.sockets.port for app in apps],
            http=[app.http.port for app in apps],
            tls_port=tls_port,
            plain_port=plain_port,
            certificate=certificate,
            private_key=private_key,
            logs=directory,
        )
    )
    config = directory / "nginx.conf"
    config.write_text(main_config(directory, site))
    error_log = directory / "error.log"
    command = [nginx, "-p", str(directory), "-c", str(config), "-e", str(error_log)]
    command += ["-g", f"daemon off; pid {directory / 'nginx.pid'};"]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, f"nginx -t refused the rendered site:\n{checked.stderr}"
    output = (directory / "output.log").open("wb")
    process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    tls = ssl.create_default_context(cafile=str(certificate))
    opened = Front(apps, code_log, tls, tls_port, plain_port)
    try:
        await _listening(process, tls_port, error_log)
        yield opened
    finally:
        await opened.close()
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 10)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)
        output.close()


async def _listening(process: subprocess.Popen[bytes], port: int, error_log: Path) -> None:
    """Wait for nginx to accept connections; fail with its error log if it exits."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        if process.poll() is not None or asyncio.get_running_loop().time() > deadline:
            log = error_log.read_text() if error_log.exists() else "(no error log)"
            pytest.fail(f"nginx did not start (exit {process.poll()}):\n{log}")
        try:
            _, writer = await asyncio.open_connection(NGINX, port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        await writer.wait_closed()
        return


async def replayed(client: RtcClient, app: App, user_id: int, after: int) -> list[Any]:
    """Wait for every event of ``user_id``'s log after seq ``after`` on ``client``;
    return them as the log holds them, checking ``client`` got exactly those, in order."""
    assert app.db is not None
    rows = await app.db.fetch(
        "SELECT seq, event FROM user_events WHERE user_id = $1 AND seq > $2 ORDER BY seq",
        user_id,
        after,
    )
    expected = [(r["seq"], r["event"]) for r in rows]
    got: list[tuple[int, str]] = []
    async with asyncio.timeout(10):
        while len(got) < len(expected):
            event = await client.next_event()
            if event.seq is not None:
                got.append((event.seq, event.method))
    assert got == expected
    return expected


# -- the tests -------------------------------------------------------------------------


async def test_logins_a_booking_and_a_resume_through_nginx(front: Front) -> None:
    a, b = front.apps
    # A client writing its own X-Forwarded-For: nginx appends the address it saw.
    customer, customer_id = await front.login(
        CUSTOMER, "customer", "Asha Rao", headers={"X-Forwarded-For": "6.6.6.6"}
    )
    provider, provider_id = await front.login(PROVIDER, "provider", "Ravi Kumar")

    # Each instance took its client's real address: not the forged entry, not nginx's.
    for client, source in ((customer, CUSTOMER), (provider, PROVIDER)):
        (session,) = (await client.call("auth.sessions"))["sessions"]
        assert session["ip"] == source
    sockets = [c for app in front.apps for c in app.hub.sockets_of(customer_id)]
    assert [c.caller.ip for c in sockets] == [CUSTOMER]
    # nginx spread the two sockets (least connections): the booking crosses instances.
    (customer_home,) = front.holders(customer_id)
    (provider_home,) = front.holders(provider_id)
    assert customer_home is not provider_home

    # A booking: offered live to the provider on the other instance.
    listing_id, subs = await listing(a, provider)
    address = await home_address(customer)
    booking = await customer.call(
        "bookings.create",
        {
            "idempotencyKey": key(),
            "providerServiceId": listing_id,
            "subServiceIds": subs[:2],
            "appointmentAt": later(a).isoformat(),
            "addressId": address["id"],
            "description": "Leaking tap",
        },
    )
    offer = await next_of(provider, "booking.offered")
    assert offer["booking"]["id"] == booking["id"]
    assert (await next_of(customer, "booking.updated"))["change"] == "created"

    # The customer's socket drops; the provider accepts meanwhile.
    await customer.close()
    seen = customer.last_seq
    assert seen is not None
    await provider.call("bookings.accept", {"idempotencyKey": key(), "bookingId": booking["id"]})
    # Back through nginx with its last seq: every event it missed, each once, in order.
    resumed = await front.reconnect(customer, CUSTOMER)
    missed = await replayed(resumed, a, customer_id, seen)
    assert "booking.updated" in [event for _, event in missed]
    accepted = [e for e in resumed.received if e.method == "booking.updated"]
    assert accepted[-1].data["booking"]["status"] == "accepted"
    # And live again: an event published on either instance reaches it.
    for app in (a, b):
        await app.publisher.publish(customer_id, loose("e"), Loose.of({"on": app.sockets.port}))
    await replayed(resumed, a, customer_id, missed[-1][0])


async def test_a_stopping_instance_loses_no_client_behind_nginx(front: Front) -> None:
    customer, customer_id = await front.login(CUSTOMER, "customer", "Asha Rao")
    (home,) = front.holders(customer_id)
    (other,) = [app for app in front.apps if app is not home]
    start = customer.last_seq
    assert start is not None
    for n in range(3):
        await other.publisher.publish(customer_id, loose("e"), Loose.of({"n": n}))
    await replayed(customer, other, customer_id, start)

    # A rolling restart: the customer's instance stops (SIGTERM's path), its sockets
    # close with 1012 and its port closes; events go on being published meanwhile.
    stopping = asyncio.create_task(home.stop())
    assert await customer.wait_closed() == 1012
    await stopping
    seen = customer.last_seq
    assert seen is not None
    for n in range(3, 8):
        await other.publisher.publish(customer_id, loose("e"), Loose.of({"n": n}))

    # Reconnecting through nginx lands on the instance still up (nginx skips the one
    # that refuses), which replays everything missed.
    resumed = await front.reconnect(customer, CUSTOMER)
    assert front.holders(customer_id) == [other]
    missed = await replayed(resumed, other, customer_id, seen)
    assert [e.data["n"] for e in resumed.received if e.seq] == list(range(3, 8))
    assert len(missed) == 5
    # The login still works through nginx with one instance gone.
    _, provider_id = await front.login(PROVIDER, "provider", "Ravi Kumar")
    assert front.holders(provider_id) == [other]


async def test_only_the_public_http_routes_go_through_nginx(front: Front) -> None:
    a, _ = front.apps
    bearer = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    async with front.http(CUSTOMER) as http:
        async with http.get(f"{front.https}/healthz") as answer:
            assert answer.status == 200 and await answer.json() == {"status": "ok"}
            assert answer.headers["Strict-Transport-Security"].startswith("max-age=")
        async with http.get(f"{front.https}/readyz") as answer:
            assert answer.status == 200 and (await answer.json())["status"] == "ready"
        # Metrics: not through nginx, not even with the token (Prometheus scrapes each
        # instance directly); nor the development payment simulator, nor anything else.
        for path in ("/metrics", "/%6Detrics", "//metrics", "/simulator/paytm/x", "/nothing"):
            raw = URL(f"{front.https}{path}", encoded=True)  # sent as written
            async with http.get(raw, headers=bearer) as answer:
                assert answer.status == 404, path
                assert "rtc_" not in await answer.text()
        # The public routes reach an instance: a recording link without its signature
        # is the instance's refusal, a payment callback without a checksum too.
        async with http.get(f"{front.https}/recordings/1/mixed.ogg?exp=1&u=1&sig=x") as answer:
            assert answer.status == 403 and "error" in await answer.json()
        # Uploads: the URL's signature is the instance's to check, behind a body limit
        # of the upload's size; public pictures pass too.
        # A refused body within the cap is read and discarded by the instance, so nginx
        # (still sending it) relays the refusal rather than a 502.
        for _ in range(5):
            upload = f"{front.https}/uploads/{uuid4()}?exp=1&sig=x"
            async with http.put(upload, data=io.BytesIO(b"\xff" * 4_000_000)) as answer:
                assert answer.status == 403
                assert (await answer.json())["reason"] == "invalid_link"
        picture = f"{front.https}/public/uploads/{uuid4()}/thumb"
        async with http.get(picture) as answer:
            assert answer.status == 404 and (await answer.json())["reason"] == "gone"
        callback = f"{front.https}/payments/paytm/webhook"
        async with http.post(callback, data={"ORDERID": "x"}) as answer:
            assert answer.status == 400
        # The admin console's page, with its own policy.
        async with http.get(f"{front.https}/admin/") as answer:
            assert answer.status == 200 and "<title>" in await answer.text()
            assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
        # Bodies past the largest a public route takes stop at nginx.
        async with http.post(callback, data={"ORDERID": "x" * 20_000}) as answer:
            assert answer.status == 413
        # In clear: a redirect only.
        plain = f"http://{NGINX}:{front.plain_port}/healthz"
        async with http.get(plain, allow_redirects=False) as answer:
            assert answer.status == 301
            assert answer.headers["Location"].startswith(f"https://{NGINX}")
    # Directly on an instance's HTTP port, with the token, metrics are there.
    async with aiohttp.ClientSession() as http:
        metrics = f"http://{INSTANCES}:{a.http.port}/metrics"
        async with http.get(metrics, headers=bearer) as answer:
            assert answer.status == 200 and "rtc_sockets_open" in await answer.text()


# -- the systemd environment -----------------------------------------------------------


def systemd_environment(path: Path) -> tuple[dict[str, str], list[str]]:
    """The variables of an EnvironmentFile (as systemd reads the syntax the examples
    use: KEY=value, single quotes around JSON) and the names of those commented out."""
    values: dict[str, str] = {}
    commented: list[str] = []
    for line in path.read_text().splitlines():
        line = line.strip()
        example = re.match(r"#\s*(RTC_[A-Z0-9_]+)=", line)
        if example:
            commented.append(example[1])
        if not line or line.startswith(("#", ";")):
            continue
        name, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"RTC_[A-Z0-9_]+", name), f"{path}: {line!r}"
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        else:  # systemd would unquote or unescape these: quote the value
            assert not re.search(r"[\"'\\\s]", value), f"{path}: quote the value of {name}"
        values[name] = value
    return values, commented


def _names_a_setting(settings: CoreSettings, name: str) -> bool:
    if name == "RTC_DATA_DIR":
        return True
    section, sep, setting = name.removeprefix("RTC_").lower().partition("__")
    value = getattr(settings, section, None)
    return bool(sep) and isinstance(value, BaseModel) and setting in type(value).model_fields


async def test_the_environment_example_is_a_production_configuration_that_starts(
    monkeypatch: pytest.MonkeyPatch,
    db_dsn: str,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
    clock: FakeClock,
) -> None:
    shared, shared_commented = systemd_environment(ENV_EXAMPLE)
    instance, _ = systemd_environment(INSTANCE_EXAMPLE)
    for name, value in {**shared, **instance}.items():
        monkeypatch.setenv(name, value)
    # What differs on this machine: the database, Redis, free ports, the folder.
    here = {
        "data_dir": tmp_path,
        "database": {"dsn": db_dsn},
        "redis": {"url": redis_url, "prefix": redis_prefix},
        "server": {"port": 0},
        "http": {"port": 0},
    }
    empty = tmp_path / "config.toml"  # no TOML: the unit runs where there is none
    empty.write_text("")
    settings = load_settings(empty, here, model=Settings)
    for name in [*shared, *shared_commented, *instance]:
        assert _names_a_setting(settings, name), f"{name} is not a setting"
    assert settings.server.environment == "production"
    assert settings.server.trusted_proxies == ["127.0.0.1"]
    assert settings.section(CallSettings).effective_policy == "relay-only"
    check_production(settings)
    # The unit gives a stopping instance its grace and the 20 s docs/operations.md asks.
    stop = re.search(r"^TimeoutStopSec=(\d+)s?$", UNIT.read_text(), re.MULTILINE)
    assert stop is not None
    assert int(stop[1]) >= settings.server.shutdown_grace + 20
    # Every feature's production checks pass: the server starts on it.
    app = App(settings, clock=clock)
    try:
        await app.start()
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://{INSTANCES}:{app.http.port}/readyz") as answer:
                assert answer.status == 200
            async with http.get(f"http://{INSTANCES}:{app.http.port}/metrics") as answer:
                assert answer.status == 401
    finally:
        await app.stop()
