"""The storage layer against a real PostgreSQL: migrations, the pool, the embedded server."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from storage import (
    CheckViolation,
    Database,
    DatabaseUnavailable,
    EmbeddedPostgres,
    ForeignKeyViolation,
    MigrationChecksumMismatch,
    MigrationError,
    PoolSettings,
    PoolStats,
    SerializationConflict,
    StorageError,
    UniqueViolation,
    apply_migrations,
    pending_migrations,
    translate,
)
from storage.migrate import MIGRATION_LOCK_KEY, MIGRATIONS_DIR, discover_migrations

REPO_ROOT = Path(__file__).resolve().parents[2]

CreateDatabase = Callable[..., Awaitable[str]]


# Helpers.


def write_migration(directory: Path, name: str, sql: str) -> Path:
    path = directory / name
    path.write_text(sql)
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds; for states PostgreSQL announces no event for."""
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.01)


async def table_exists(db: Database, name: str) -> bool:
    return await db.fetchval("SELECT to_regclass($1) IS NOT NULL", name) is True


@pytest.fixture
def migrations_dir(tmp_path: Path) -> Path:
    """A directory for the test's own migration files."""
    directory = tmp_path / "migrations"
    directory.mkdir()
    return directory


@pytest.fixture
async def empty_db(create_database: CreateDatabase) -> AsyncIterator[Database]:
    """A connected Database on a new database with no migration applied."""
    database = await Database.connect(PoolSettings(dsn=await create_database()))
    try:
        yield database
    finally:
        await database.close()


# Migration files: parsing (no database).


@pytest.mark.parametrize(
    "name",
    ["1_core.sql", "00001_core.sql", "0001-core.sql", "0001_Core.sql", "0001_.sql", "0001.sql"],
)
def test_discover_rejects_malformed_file_names(migrations_dir: Path, name: str) -> None:
    write_migration(migrations_dir, name, "SELECT 1;")
    with pytest.raises(MigrationError, match="NNNN_name.sql"):
        discover_migrations(migrations_dir)


def test_discover_rejects_two_files_with_one_version(migrations_dir: Path) -> None:
    write_migration(migrations_dir, "0001_a.sql", "SELECT 1;")
    write_migration(migrations_dir, "0001_b.sql", "SELECT 2;")
    with pytest.raises(MigrationError, match="share version 1"):
        discover_migrations(migrations_dir)


def test_discover_orders_by_version_and_ignores_other_files(migrations_dir: Path) -> None:
    for name in ["0010_c.sql", "0002_b.sql", "0001_a.sql"]:
        write_migration(migrations_dir, name, f"-- {name}\n")
    (migrations_dir / "README.md").write_text("not a migration")
    found = discover_migrations(migrations_dir)
    assert [(m.version, m.name) for m in found] == [
        (1, "0001_a.sql"),
        (2, "0002_b.sql"),
        (10, "0010_c.sql"),
    ]
    assert found[0].checksum == sha256_of(migrations_dir / "0001_a.sql")


def test_packaged_migrations_start_with_the_core_schema() -> None:
    found = discover_migrations()
    assert found[0].name == "0001_core.sql"
    assert {m.name for m in found} == {p.name for p in MIGRATIONS_DIR.glob("*.sql")}


# Migration runner.


async def test_migrations_apply_in_order_record_checksums_and_are_idempotent(
    empty_db: Database, migrations_dir: Path
) -> None:
    first = write_migration(migrations_dir, "0001_a.sql", "CREATE TABLE a (id int);")
    second = write_migration(
        migrations_dir, "0002_b.sql", "CREATE TABLE b (id int);\nINSERT INTO a VALUES (1);"
    )

    assert await apply_migrations(empty_db, migrations_dir) == ["0001_a.sql", "0002_b.sql"]

    rows = await empty_db.fetch(
        "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
    )
    assert [tuple(row) for row in rows] == [
        (1, "0001_a.sql", sha256_of(first)),
        (2, "0002_b.sql", sha256_of(second)),
    ]
    assert await empty_db.fetchval("SELECT count(*) FROM a") == 1
    assert await apply_migrations(empty_db, migrations_dir) == []
    assert await empty_db.fetchval("SELECT count(*) FROM a") == 1

    write_migration(migrations_dir, "0003_c.sql", "CREATE TABLE c (id int);")
    assert await apply_migrations(empty_db, migrations_dir) == ["0003_c.sql"]
    assert await table_exists(empty_db, "c")


async def test_packaged_migrations_apply_to_an_empty_database(empty_db: Database) -> None:
    names = [m.name for m in discover_migrations()]
    assert await pending_migrations(empty_db) == names
    assert await apply_migrations(empty_db) == names
    assert await apply_migrations(empty_db) == []
    assert await pending_migrations(empty_db) == []
    assert await table_exists(empty_db, "users")


async def test_template_copies_are_fully_migrated(db: Database) -> None:
    assert await pending_migrations(db) == []
    assert await table_exists(db, "user_events")


async def test_concurrent_runs_wait_for_each_other_and_apply_each_migration_once(
    create_database: CreateDatabase, migrations_dir: Path
) -> None:
    # Not idempotent on purpose: applying one twice would fail.
    for n in range(1, 6):
        write_migration(migrations_dir, f"000{n}_m{n}.sql", f"CREATE TABLE m{n} (id int);")
    dsn = await create_database()
    first = await Database.connect(PoolSettings(dsn=dsn))
    second = await Database.connect(PoolSettings(dsn=dsn))
    holder = await asyncpg.connect(dsn)
    try:
        # Hold the migration lock until both runs are seen waiting for it, then let go:
        # they are released together, and only the lock keeps them apart.
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        runs = asyncio.gather(
            apply_migrations(first, migrations_dir), apply_migrations(second, migrations_dir)
        )

        async def both_waiting() -> bool:
            waiting = await holder.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
            return bool(waiting == 2)

        await wait_until(both_waiting)
        await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
        results = await runs

        names = [f"000{n}_m{n}.sql" for n in range(1, 6)]
        assert sorted(results) == [[], names]
        assert await holder.fetchval("SELECT count(*) FROM schema_migrations") == 5
    finally:
        await holder.close()
        await first.close()
        await second.close()


async def test_a_changed_applied_migration_stops_the_run_before_anything_new(
    empty_db: Database, migrations_dir: Path
) -> None:
    applied = write_migration(migrations_dir, "0001_a.sql", "CREATE TABLE a (id int);")
    await apply_migrations(empty_db, migrations_dir)
    expected = sha256_of(applied)
    applied.write_text("CREATE TABLE a (id bigint);")
    write_migration(migrations_dir, "0002_b.sql", "CREATE TABLE b (id int);")

    with pytest.raises(MigrationChecksumMismatch) as caught:
        await apply_migrations(empty_db, migrations_dir)

    assert caught.value.migration == "0001_a.sql"
    assert caught.value.expected == expected
    assert caught.value.found == sha256_of(applied)
    assert "0001_a.sql" in str(caught.value)
    assert not await table_exists(empty_db, "b")


async def test_an_applied_migration_whose_file_is_gone_stops_the_run(
    empty_db: Database, migrations_dir: Path
) -> None:
    gone = write_migration(migrations_dir, "0001_a.sql", "CREATE TABLE a (id int);")
    await apply_migrations(empty_db, migrations_dir)
    gone.unlink()
    write_migration(migrations_dir, "0002_b.sql", "CREATE TABLE b (id int);")

    with pytest.raises(MigrationError, match="0001_a.sql.*missing"):
        await apply_migrations(empty_db, migrations_dir)
    assert not await table_exists(empty_db, "b")


async def test_a_failing_migration_is_rolled_back_and_earlier_ones_stay(
    empty_db: Database, migrations_dir: Path
) -> None:
    write_migration(migrations_dir, "0001_a.sql", "CREATE TABLE a (id int);")
    broken = write_migration(
        migrations_dir, "0002_b.sql", "CREATE TABLE b (id int);\nINSERT INTO nowhere VALUES (1);"
    )
    write_migration(migrations_dir, "0003_c.sql", "CREATE TABLE c (id int);")

    with pytest.raises(MigrationError) as caught:
        await apply_migrations(empty_db, migrations_dir)

    assert type(caught.value) is MigrationError
    assert caught.value.migration == "0002_b.sql"
    assert "0002_b.sql" in str(caught.value)
    assert 'relation "nowhere" does not exist' in str(caught.value)
    assert await table_exists(empty_db, "a")
    assert not await table_exists(empty_db, "b")  # its own changes rolled back
    assert not await table_exists(empty_db, "c")
    assert await pending_migrations(empty_db, migrations_dir) == ["0002_b.sql", "0003_c.sql"]

    broken.write_text("CREATE TABLE b (id int);")
    assert await apply_migrations(empty_db, migrations_dir) == ["0002_b.sql", "0003_c.sql"]


async def test_pending_migrations_lists_what_is_left_and_takes_no_lock(
    create_database: CreateDatabase, migrations_dir: Path
) -> None:
    write_migration(migrations_dir, "0001_a.sql", "CREATE TABLE a (id int);")
    write_migration(migrations_dir, "0002_b.sql", "CREATE TABLE b (id int);")
    dsn = await create_database()
    db = await Database.connect(PoolSettings(dsn=dsn))
    holder = await asyncpg.connect(dsn)
    try:
        assert await pending_migrations(db, migrations_dir) == ["0001_a.sql", "0002_b.sql"]
        (migrations_dir / "0002_b.sql").rename(migrations_dir / "0002_b.sql.off")
        await apply_migrations(db, migrations_dir)
        (migrations_dir / "0002_b.sql.off").rename(migrations_dir / "0002_b.sql")

        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        async with asyncio.timeout(5):
            assert await pending_migrations(db, migrations_dir) == ["0002_b.sql"]
    finally:
        await holder.close()
        await db.close()


# The pool: error translation.


async def add_user(db: Database, phone: str = "+919876543210", role: str = "customer") -> int:
    user_id = await db.fetchval(
        "INSERT INTO users (phone, role) VALUES ($1, $2) RETURNING id", phone, role
    )
    assert isinstance(user_id, int)
    return user_id


async def test_unique_violation_names_its_constraint(db: Database) -> None:
    await add_user(db)
    with pytest.raises(UniqueViolation) as caught:
        await add_user(db)
    assert caught.value.constraint == "users_phone_role_key"
    assert caught.value.sqlstate == "23505"
    assert isinstance(caught.value.__cause__, asyncpg.UniqueViolationError)


async def test_foreign_key_and_check_violations(db: Database) -> None:
    with pytest.raises(ForeignKeyViolation) as fk:
        await db.execute(
            "INSERT INTO auth_sessions (id, user_id, expires_at)"
            " VALUES (gen_random_uuid(), 424242, now())"
        )
    assert fk.value.constraint == "auth_sessions_user_id_fkey"
    with pytest.raises(CheckViolation) as check:
        await add_user(db, role="plumber")
    assert check.value.constraint == "users_role_check"


async def test_a_transaction_commits_or_rolls_back_as_a_whole(db: Database) -> None:
    async with db.transaction() as conn:
        await conn.execute("INSERT INTO users (phone, role) VALUES ('+911', 'customer')")

    with pytest.raises(UniqueViolation):
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO users (phone, role) VALUES ('+912', 'customer')")
            await conn.execute("INSERT INTO users (phone, role) VALUES ('+911', 'customer')")

    with pytest.raises(ValueError, match="not ours"):  # the caller's own errors pass as they are
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO users (phone, role) VALUES ('+913', 'customer')")
            raise ValueError("not ours")

    phones = await db.fetch("SELECT phone FROM users ORDER BY phone")
    assert [row["phone"] for row in phones] == ["+911"]


async def test_a_lost_serialization_race_is_a_retryable_conflict(db: Database) -> None:
    await add_user(db)
    # Two serializable transactions each read what the other writes (write skew).
    with pytest.raises(SerializationConflict) as caught:
        async with (
            db.transaction(isolation="serializable") as first,
            db.transaction(isolation="serializable") as second,
        ):
            await first.fetchval("SELECT count(*) FROM users WHERE role = 'admin'")
            await second.fetchval("SELECT count(*) FROM users WHERE role = 'provider'")
            await first.execute("INSERT INTO users (phone, role) VALUES ('+91a', 'provider')")
            await second.execute("INSERT INTO users (phone, role) VALUES ('+91b', 'admin')")
    assert caught.value.retryable
    assert caught.value.sqlstate == "40001"


async def test_json_comes_back_as_text(db: Database) -> None:
    user_id = await add_user(db)
    await db.execute(
        "INSERT INTO user_events (user_id, seq, event, payload) VALUES ($1, 1, 'x', $2)",
        user_id,
        '{"a": 1}',
    )
    assert await db.fetchval("SELECT payload FROM user_events") == '{"a": 1}'


async def test_executemany_and_fetchrow(db: Database) -> None:
    await db.executemany(
        "INSERT INTO users (phone, role) VALUES ($1, $2)",
        [("+914", "customer"), ("+915", "provider")],
    )
    row = await db.fetchrow("SELECT phone, role FROM users WHERE role = 'provider'")
    assert row is not None and (row["phone"], row["role"]) == ("+915", "provider")
    assert await db.fetchrow("SELECT 1 WHERE false") is None


async def test_statement_errors_are_storage_errors(db: Database) -> None:
    with pytest.raises(StorageError) as caught:
        await db.fetch("SELECT * FROM no_such_table")
    assert type(caught.value) is StorageError
    assert caught.value.sqlstate == "42P01"


async def test_an_unreachable_server_is_unavailable_at_once(tmp_path: Path) -> None:
    dsn = f"postgresql://postgres@/postgres?host={tmp_path}&port=5432"  # no socket there
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable):
        await Database.connect(PoolSettings(dsn=dsn, connect_timeout=5.0))
    assert time.monotonic() - started < 5.0


async def test_a_silent_server_is_unavailable_after_the_connect_timeout() -> None:
    let_go = asyncio.Event()

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await let_go.wait()
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable):
            dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
            await Database.connect(PoolSettings(dsn=dsn, connect_timeout=0.5))
        elapsed = time.monotonic() - started
        assert 0.4 <= elapsed < 3.0
    finally:
        let_go.set()
        server.close()
        await server.wait_closed()


async def test_a_missing_database_is_unavailable(pg_dsn: str) -> None:
    from tests.conftest import with_database

    with pytest.raises(DatabaseUnavailable) as caught:
        await Database.connect(PoolSettings(dsn=with_database(pg_dsn, "no_such_database")))
    assert caught.value.sqlstate == "3D000"


async def test_a_bad_server_setting_is_not_reported_as_unavailable(pg_dsn: str) -> None:
    with pytest.raises(StorageError) as caught:
        await Database.connect(PoolSettings(dsn=pg_dsn, timezone="Mars/Olympus_Mons"))
    assert not isinstance(caught.value, DatabaseUnavailable)
    assert "Mars/Olympus_Mons" in str(caught.value)


async def test_a_closed_pool_is_unavailable_and_fails_ping(db_dsn: str) -> None:
    db = await Database.connect(PoolSettings(dsn=db_dsn))
    assert await db.ping()
    await db.close()
    assert not await db.ping()
    with pytest.raises(DatabaseUnavailable):
        await db.fetchval("SELECT 1")


# The pool: session and statistics.


async def test_sessions_use_india_time_and_name_the_application(db: Database) -> None:
    assert await db.fetchval("SHOW timezone") == "Asia/Kolkata"
    assert await db.fetchval("SELECT current_setting('application_name')") == "buildxpert-rtc"
    assert (
        await db.fetchval("SELECT '2024-01-01 00:00:00+00'::timestamptz::text")
        == "2024-01-01 05:30:00+05:30"
    )


async def test_stats_count_coroutines_waiting_for_a_connection(db_dsn: str) -> None:
    db = await Database.connect(PoolSettings(dsn=db_dsn, min_size=1, max_size=1))
    queries: list[asyncio.Task[object]] = []
    try:
        assert db.stats() == PoolStats(size=1, idle=1, waiting=0, max_size=1)
        async with db.acquire():
            queries += [asyncio.create_task(db.fetchval("SELECT $1::int", n)) for n in (1, 2)]

            async def both_waiting() -> bool:
                return db.stats().waiting == 2

            await wait_until(both_waiting)
            assert db.stats() == PoolStats(size=1, idle=0, waiting=2, max_size=1)
        assert await asyncio.gather(*queries) == [1, 2]
        assert db.stats() == PoolStats(size=1, idle=1, waiting=0, max_size=1)
    finally:
        for task in queries:
            task.cancel()
        await asyncio.gather(*queries, return_exceptions=True)
        await db.close()


# translate() on its own.


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (TimeoutError(), DatabaseUnavailable),
        (ConnectionResetError("reset by peer"), DatabaseUnavailable),
        (asyncpg.InterfaceError("pool is closed"), DatabaseUnavailable),
        (asyncpg.ConnectionDoesNotExistError("gone"), DatabaseUnavailable),
        (asyncpg.CannotConnectNowError("starting up"), DatabaseUnavailable),
        (asyncpg.DeadlockDetectedError("deadlock"), SerializationConflict),
        (asyncpg.UniqueViolationError("dup"), UniqueViolation),
        (asyncpg.InterfaceError("another operation is in progress"), StorageError),
        (asyncpg.PostgresSyntaxError("syntax"), StorageError),
    ],
)
def test_translate(exc: BaseException, expected: type[StorageError]) -> None:
    assert type(translate(exc)) is expected


def test_translate_keeps_storage_errors() -> None:
    error = UniqueViolation("dup", constraint="c")
    assert translate(error) is error


# The embedded server.


def postmaster_pid(data_dir: Path) -> int | None:
    """The running server's pid from its postmaster.pid, None if it is stopped."""
    pid_file = data_dir / "postgres" / "postmaster.pid"
    if not pid_file.exists():
        return None
    return int(pid_file.read_text().splitlines()[0])


async def query(dsn: str, sql: str) -> object:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def test_embedded_keeps_its_data_across_a_restart(embedded_data_dir: Path) -> None:
    server = await asyncio.to_thread(EmbeddedPostgres.start, embedded_data_dir)
    try:
        await query(server.dsn, "CREATE TABLE kept AS SELECT 42 AS answer")
    finally:
        await asyncio.to_thread(server.stop)
    assert postmaster_pid(embedded_data_dir) is None
    with pytest.raises(DatabaseUnavailable):
        await Database.connect(PoolSettings(dsn=server.dsn, connect_timeout=2.0))

    server = await asyncio.to_thread(EmbeddedPostgres.start, embedded_data_dir)
    try:
        assert await query(server.dsn, "SELECT answer FROM kept") == 42
    finally:
        await asyncio.to_thread(server.stop)
        server.stop()  # idempotent


async def test_embedded_handles_in_one_process_share_the_server(embedded_data_dir: Path) -> None:
    first = await asyncio.to_thread(EmbeddedPostgres.start, embedded_data_dir)
    second = await asyncio.to_thread(EmbeddedPostgres.start, embedded_data_dir)
    try:
        assert first.dsn == second.dsn
        await asyncio.to_thread(first.stop)
        assert await query(second.dsn, "SELECT 1") == 1
    finally:
        await asyncio.to_thread(second.stop)
    assert postmaster_pid(embedded_data_dir) is None


# A second process, as an admin command run next to the server would be.
CHILD = """
import asyncio, json, os, sys
from pathlib import Path
import asyncpg
from storage import EmbeddedPostgres

server = EmbeddedPostgres.start(Path(sys.argv[1]))

async def read():
    conn = await asyncpg.connect(server.dsn)
    try:
        return await conn.fetchval("SELECT answer FROM shared")
    finally:
        await conn.close()

pid = int((server.pgdata / "postmaster.pid").read_text().splitlines()[0])
print(json.dumps({"pid": os.getpid(), "postmaster": pid, "answer": asyncio.run(read())}),
      flush=True)
if sys.argv[2] == "hang":
    sys.stdin.read()  # until killed
server.stop()
"""


def child(data_dir: Path, mode: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data_dir), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


async def child_report(process: subprocess.Popen[str]) -> dict[str, int]:
    assert process.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 30)
    assert line, f"child exited with {process.wait()} before reporting"
    report: dict[str, int] = json.loads(line)
    return report


@pytest.mark.slow
async def test_a_second_process_attaches_and_leaves_the_server_running(
    embedded_data_dir: Path,
) -> None:
    server = await asyncio.to_thread(EmbeddedPostgres.start, embedded_data_dir)
    try:
        await query(server.dsn, "CREATE TABLE shared AS SELECT 7 AS answer")
        pid = postmaster_pid(embedded_data_dir)

        with child(embedded_data_dir, "stop") as process:
            report = await child_report(process)
            assert await asyncio.to_thread(process.wait, 30) == 0

        assert report == {"pid": process.pid, "postmaster": pid, "answer": 7}
        assert postmaster_pid(embedded_data_dir) == pid  # the child's stop() did not stop it
        assert await query(server.dsn, "SELECT answer FROM shared") == 7
    finally:
        await asyncio.to_thread(server.stop)
    assert postmaster_pid(embedded_data_dir) is None  # the last user stopped it


@pytest.mark.slow
async def test_a_killed_second_process_does_not_keep_the_server_alive(
    embedded_data_dir: Path,
) -> None:
    server = await asyncio.to_thread(EmbeddedPostgres.start, embedded_data_dir)
    try:
        await query(server.dsn, "CREATE TABLE shared AS SELECT 7 AS answer")
        with child(embedded_data_dir, "hang") as process:
            report = await child_report(process)
            process.kill()  # no atexit hook runs: it stays listed as a user of the server
            await asyncio.to_thread(process.wait, 30)
        users = json.loads((embedded_data_dir / "postgres" / ".handle_pids.json").read_text())
        assert report["pid"] in users
    finally:
        await asyncio.to_thread(server.stop)
    assert postmaster_pid(embedded_data_dir) is None


async def test_acquire_resets_session_state_and_statements_skip_the_reset(
    db_dsn: str,
) -> None:
    """One pooled connection: what an acquire() block changes is undone at release;
    single statements pay no reset round trip yet leave nothing behind."""
    database = await Database.connect(PoolSettings(dsn=db_dsn, min_size=1, max_size=1))
    try:
        pid = await database.fetchval("SELECT pg_backend_pid()")
        async with database.acquire() as conn:
            await conn.execute("SET statement_timeout = 1234")
            await conn.execute("SELECT pg_advisory_lock(42)")
        assert await database.fetchval("SELECT pg_backend_pid()") == pid  # same connection
        assert await database.fetchval("SHOW statement_timeout") == "0"
        held = await database.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        assert held == 0
        with pytest.raises(RuntimeError):
            async with database.transaction() as conn:
                await conn.execute("CREATE TEMP TABLE t (x int)")
                raise RuntimeError("roll back")
        assert await database.fetchval("SELECT to_regclass('pg_temp.t')") is None
    finally:
        await database.close()
