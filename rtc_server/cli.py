"""``rtc-server``: run the server, apply migrations, create an admin.

    rtc-server [serve] [--config FILE] [--data-dir DIR] [--port N] [--http-port N]
                       [--log-format json|text]
    rtc-server migrate [--config FILE] [--data-dir DIR]
    rtc-server create-admin --phone P [--name N] [--config FILE] [--data-dir DIR]
    rtc-server remove-admin --phone P [--config FILE] [--data-dir DIR]
    rtc-server jobs list [--config FILE] [--data-dir DIR]
    rtc-server jobs run NAME [--config FILE] [--data-dir DIR]

Flags win over environment variables, which win over the config file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rtc_server import logs
from rtc_server.config import ConfigError, CoreSettings, load_settings

if TYPE_CHECKING:
    from storage.database import Database

log = logging.getLogger("rtc.cli")


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="TOML settings file (default ./config.toml)")
    common.add_argument("--data-dir", type=Path, help="data folder (embedded PostgreSQL ...)")
    common.add_argument("--log-format", choices=["json", "text"], help="log line format")

    parser = argparse.ArgumentParser(prog="rtc-server", description="BuildXpert RTC server")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", parents=[common], help="run the server (default)")
    serve.add_argument("--port", type=int, help="socket port (websockets)")
    serve.add_argument("--http-port", type=int, help="HTTP port (health, metrics)")
    commands.add_parser("migrate", parents=[common], help="apply database migrations and exit")
    admin = commands.add_parser(
        "create-admin", parents=[common], help="create or re-activate an admin account"
    )
    admin.add_argument("--phone", required=True)
    admin.add_argument("--name")
    unadmin = commands.add_parser(
        "remove-admin",
        parents=[common],
        help="deactivate an admin account and end its sessions (admins cannot remove admins)",
    )
    unadmin.add_argument("--phone", required=True)
    jobs = commands.add_parser("jobs", help="the scheduled jobs").add_subparsers(
        dest="jobs_command", required=True
    )
    jobs.add_parser("list", parents=[common], help="each scheduled job, its next and last run")
    run = jobs.add_parser("run", parents=[common], help="an extra run of a job, now")
    run.add_argument("name")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    if getattr(args, "port", None) is not None:
        overrides["server"] = {"port": args.port}
    if getattr(args, "http_port", None) is not None:
        overrides["http"] = {"port": args.http_port}
    if args.log_format is not None:
        overrides["log"] = {"format": args.log_format}
    return overrides


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv.insert(0, "serve")
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config, _overrides(args))
    except ConfigError as exc:
        print(f"rtc-server: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log.format, settings.log.level)
    if args.command == "migrate":
        return asyncio.run(_migrate(settings))
    if args.command == "create-admin":
        return asyncio.run(_create_admin(settings, args.phone, args.name))
    if args.command == "remove-admin":
        return asyncio.run(_remove_admin(settings, args.phone))
    if args.command == "jobs":
        from rtc_server import jobs_cli

        if args.jobs_command == "list":
            return asyncio.run(jobs_cli.list_jobs(settings))
        return asyncio.run(jobs_cli.run_job(settings, args.name))
    return _serve(settings)


def _serve(settings: CoreSettings) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        return asyncio.run(_run(settings))
    return uvloop.run(_run(settings))


async def _run(settings: CoreSettings) -> int:
    from rtc_server.app import App
    from storage.errors import StorageError

    app = App(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await app.start()
    except (StorageError, OSError) as exc:  # database unreachable, port in use ...
        log.error("cannot start: %s", exc)
        await app.stop()
        return 1
    except ConfigError as exc:  # a setting naming a file that is not there ...
        log.error("cannot start: %s", exc)
        await app.stop()
        return 2
    tune_collector()
    await stop.wait()
    await app.stop()
    return 0


# CPython's collector runs a full collection (every tracked object not frozen) after
# 10 collections of the second generation, if the objects moved to the oldest since
# the last full one make a quarter of those there. An instance taking its sockets back
# (about 60 long-lived tracked objects each) meets both again and again: 8 full
# collections while 10,000 sockets opened, 30-300 ms each with the event loop
# stopped, about 100 us of CPU per handshake, and nothing to free (bench/README.md,
# "Garbage collection and the handshake's headers"). After 100 instead: young garbage
# is collected as often as before; the price is that a cycle which dies in the oldest
# generation waits longer for a full collection.
GC_THRESHOLDS = (700, 10, 100)


def tune_collector() -> None:
    """Garbage collection for a long-running server, once it has started."""
    # Everything allocated at start-up lives as long as the process: keep it out of
    # the collector's generations, so collections triggered by request garbage stay
    # short (https://docs.python.org/3/library/gc.html#gc.freeze).
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


@contextlib.asynccontextmanager
async def _database(settings: CoreSettings) -> AsyncIterator[tuple[Database, list[str]]]:
    """The database (the embedded one started if configured so), migrated; the
    migrations applied now. Closed (and the embedded server stopped) after."""
    from rtc_server.app import open_database
    from storage.migrate import apply_migrations

    db, embedded = await open_database(settings)
    try:
        yield db, await apply_migrations(db)
    finally:
        await db.close()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


def _admin_phone(settings: CoreSettings, phone: str) -> str | None:
    """``phone`` in E.164 (read in auth.default_region), or None after saying why not."""
    from api.auth.phones import InvalidPhone, normalize_phone
    from api.auth.settings import AuthSettings

    try:
        return normalize_phone(phone, settings.section(AuthSettings).default_region)
    except InvalidPhone as exc:
        print(f"rtc-server: invalid phone: {exc.reason}", file=sys.stderr)
        return None


async def _migrate(settings: CoreSettings) -> int:
    async with _database(settings) as (_, applied):
        log.info(
            "migrations applied" if applied else "nothing to apply", extra={"migrations": applied}
        )
    return 0


async def _create_admin(settings: CoreSettings, phone: str, name: str | None) -> int:
    from storage import accounts

    normalized = _admin_phone(settings, phone)
    if normalized is None:
        return 2
    async with _database(settings) as (db, _):
        user, created = await accounts.create_admin(db, normalized, name)
    verb = "created" if created else "already existed; re-activated"
    log.info(f"admin {verb}", extra={"user": user.id, "phone": user.phone})
    print(f"admin {user.phone} (id {user.id}) {verb}")
    return 0


async def _remove_admin(settings: CoreSettings, phone: str) -> int:
    from storage import accounts

    normalized = _admin_phone(settings, phone)
    if normalized is None:
        return 2
    async with _database(settings) as (db, _):
        user_id = await accounts.remove_admin(db, normalized)
    if user_id is None:
        print(f"rtc-server: no admin account for {normalized}", file=sys.stderr)
        return 1
    log.info("admin removed", extra={"user": user_id})
    print(f"admin {normalized} (id {user_id}) removed; its sessions are ended")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
