"""Fixtures shared by every test tier.

PostgreSQL (in the spirit of asyncpg's ``_testbase``): the run uses a real server,
``RTC_TEST_DATABASE_DSN`` if set, else an embedded one it starts in a temporary
directory. A template database with every migration applied is made once per run;
each test that asks for ``db_dsn`` or ``db`` gets a fresh copy of it, dropped after.

    pg_dsn             session   DSN of the server's maintenance database (postgres)
    rtc_template       session   name of the migrated template database
    db_dsn             function  DSN of a fresh migrated database of the test's own
    db                 function  a connected storage.Database on db_dsn
    create_database    function  await create_database(template=None) -> DSN of one
                                 more database of the test's own, dropped after it
    embedded_data_dir  function  a directory for a test's own EmbeddedPostgres

A server of a test's own (the driver and end-to-end tiers):

    clock              function  a FakeClock at the real time (tokens' times are checked)
    code_log           function  the login codes the development SMS sender logged

Redis (rtc_server/scaleout/local_redis.py): a real redis-server started once per run (or
``RTC_TEST_REDIS_URL``); each test gets its own key and channel prefix on it.

    redis_url          session   URL of the run's Redis
    redis_prefix       function  a key/channel prefix of the test's own
    redis_servers      function  RedisServer factory: servers of the test's own (for
                                 outage tests), killed after

S3 (tests/s3_server.py): moto's server in a process of its own, started once per run,
with one bucket; each test gets its own key prefix in it.

    s3_endpoint        session   URL of the run's S3 server
    s3_bucket          session   the bucket's name (made at start)
    s3_prefix          function  a key prefix of the test's own ("t<hex>/")
    s3_objects         function  an [objects] section for an App on that prefix

The local servers of the SMS gateways (tests/fakes/), each a test's own:

    msg91              function  FakeMsg91: MSG91's flow API
    twilio             function  FakeTwilio: Twilio's Messages API

Every async test also fails if its event loop reported an exception nobody handled
(an exception in a callback, a task's exception never retrieved) while it ran.

Session-scoped setup is synchronous, running its async parts on a private loop, so no
fixture outlives the per-test event loops of pytest-asyncio.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from hypothesis import settings

from kernel.clock import FakeClock
from rtc_server.scaleout.local_redis import RedisServer
from storage import Database, EmbeddedPostgres, PoolSettings, apply_migrations
from tests.fakes.msg91 import FakeMsg91
from tests.fakes.twilio import FakeTwilio
from tests.s3_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, LocalS3, s3_client
from tests.servers import CodeLog

TEMPLATE_DATABASE = "rtc_template"

# Property tests depend on no example database of a machine (a fresh clone runs what
# CI runs), and a failure prints the blob that reproduces it exactly
# (@reproduce_failure) besides the falsifying example.
settings.register_profile("project", database=None, print_blob=True)
settings.load_profile("project")

T = TypeVar("T")


def with_database(dsn: str, database: str) -> str:
    """``dsn`` (a ``postgresql://`` URI) naming ``database`` instead of its own."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"expected a postgresql:// URI, got {dsn!r}")
    return urlunsplit(parts._replace(path="/" + database))


def _run(coro: Coroutine[Any, Any, T]) -> T:
    # A private loop: asyncio.run() would also clear the thread's current event loop.
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        return runner.run(coro)


async def _admin(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.contextmanager
def _server_data_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: as root, pgserver runs PostgreSQL as the user
    # "pgserver", which must traverse every parent of its data directory, and each
    # pytest run (a concurrent one too) resets /tmp/pytest-of-root to mode 0700.
    path = Path(tempfile.mkdtemp(prefix="rtc-test-postgres-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    configured = os.environ.get("RTC_TEST_DATABASE_DSN")
    if configured:
        yield configured
        return
    with _server_data_dir() as data_dir:
        server = EmbeddedPostgres.start(data_dir)
        try:
            yield server.dsn
        finally:
            server.stop()


@pytest.fixture
def embedded_data_dir() -> Iterator[Path]:
    """A data directory for a test's own EmbeddedPostgres, removed after the test."""
    with _server_data_dir() as data_dir:
        yield data_dir


async def _create_template(pg_dsn: str) -> None:
    await _admin(
        pg_dsn,
        # Left behind by a run that crashed.
        f"DROP DATABASE IF EXISTS {TEMPLATE_DATABASE} WITH (FORCE)",
        f"CREATE DATABASE {TEMPLATE_DATABASE}",
    )
    db = await Database.connect(PoolSettings(with_database(pg_dsn, TEMPLATE_DATABASE)))
    try:
        await apply_migrations(db)
    finally:
        # CREATE DATABASE ... TEMPLATE refuses a template anyone is connected to.
        await db.close()


@pytest.fixture(scope="session")
def rtc_template(pg_dsn: str) -> Iterator[str]:
    _run(_create_template(pg_dsn))
    yield TEMPLATE_DATABASE
    _run(_admin(pg_dsn, f"DROP DATABASE IF EXISTS {TEMPLATE_DATABASE} WITH (FORCE)"))


CreateDatabase = Callable[..., Awaitable[str]]


@pytest.fixture
async def create_database(pg_dsn: str) -> AsyncIterator[CreateDatabase]:
    """``await create_database(template=None)``: a new database, as a DSN, dropped after
    the test. Without a template it is empty (a copy of ``template1``)."""
    created: list[str] = []

    async def create(template: str | None = None) -> str:
        name = f"t_{uuid.uuid4().hex}"
        clause = f" TEMPLATE {template}" if template is not None else ""
        await _admin(pg_dsn, f"CREATE DATABASE {name}{clause}")
        created.append(name)
        return with_database(pg_dsn, name)

    try:
        yield create
    finally:
        for name in created:
            await _admin(pg_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
async def db_dsn(create_database: CreateDatabase, rtc_template: str) -> str:
    return await create_database(template=rtc_template)


@pytest.fixture
async def db(db_dsn: str) -> AsyncIterator[Database]:
    database = await Database.connect(PoolSettings(dsn=db_dsn))
    try:
        yield database
    finally:
        await database.close()


# A test fails if its event loop saw an unhandled exception.


@pytest.fixture(autouse=True)
def _fail_on_unhandled_loop_exceptions(request: pytest.FixtureRequest) -> None:
    # Only async tests have a loop; sync tests stay free of one. The recorder runs on
    # the per-test loop, so tests given a wider loop_scope are not watched.
    marker = request.node.get_closest_marker("asyncio")
    if marker is not None and marker.kwargs.get("loop_scope", "function") == "function":
        request.getfixturevalue("_loop_exception_recorder")


@pytest.fixture
async def _loop_exception_recorder() -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []

    def record(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        seen.append(context)
        loop.default_exception_handler(context)  # and log it, as usual

    previous = loop.get_exception_handler()
    loop.set_exception_handler(record)
    try:
        yield
    finally:
        loop.set_exception_handler(previous)
    if seen:
        pytest.fail(
            "the event loop saw unhandled exceptions:\n"
            + "\n".join(_describe_loop_context(context) for context in seen)
        )


def _describe_loop_context(context: dict[str, Any]) -> str:
    exc = context.get("exception")
    text = str(context.get("message", "unhandled exception in event loop"))
    return f"  {text}: {exc!r}" if exc is not None else f"  {text}"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    configured = os.environ.get("RTC_TEST_REDIS_URL")
    if configured:
        yield configured
        return
    server = RedisServer()
    server.start()
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture
def redis_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def redis_servers() -> Iterator[Callable[[], RedisServer]]:
    started: list[RedisServer] = []

    def start() -> RedisServer:
        server = RedisServer()
        started.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.close()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    server = LocalS3()
    server.start()
    try:
        yield server.endpoint
    finally:
        server.close()


async def _create_bucket(endpoint: str, bucket: str) -> None:
    async with s3_client(endpoint) as client:
        await client.create_bucket(Bucket=bucket)


@pytest.fixture(scope="session")
def s3_bucket(s3_endpoint: str) -> str:
    # In a thread of its own: the first test to ask may be running its event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        thread.submit(_run, _create_bucket(s3_endpoint, "rtc-tests")).result()
    return "rtc-tests"


@pytest.fixture
def s3_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}/"


@pytest.fixture
def s3_objects(s3_endpoint: str, s3_bucket: str, s3_prefix: str) -> dict[str, Any]:
    return {
        "backend": "s3",
        "bucket": s3_bucket,
        "prefix": s3_prefix,
        "endpoint_url": s3_endpoint,
        "region": REGION,
        "access_key_id": ACCESS_KEY_ID,
        "secret_access_key": SECRET_ACCESS_KEY,
        "addressing_style": "path",
    }


# Servers of a test's own (driver and end-to-end tiers).


@pytest.fixture
def code_log() -> Iterator[CodeLog]:
    handler = CodeLog()
    logger = logging.getLogger("rtc.auth")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC))


# The SMS gateways' local servers (unit senders and production servers alike).


@pytest.fixture
async def msg91() -> AsyncIterator[FakeMsg91]:
    server = await FakeMsg91().start()
    yield server
    await server.close()


@pytest.fixture
async def twilio() -> AsyncIterator[FakeTwilio]:
    server = await FakeTwilio().start()
    yield server
    await server.close()
