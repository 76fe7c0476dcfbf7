"""The embedded PostgreSQL, used when no DSN is configured.

It is pgserver's PostgreSQL (the binaries ship in its wheel), with its data in
``<data_dir>/postgres``, kept across restarts. The server listens on a unix socket
only, and trusts every local connection.

This module blocks: ``start()`` may run initdb and pg_ctl (a second or more) and
``stop()`` waits for the server to shut down. From async code call them in a thread,
``await asyncio.to_thread(EmbeddedPostgres.start, data_dir)``.

One server per data directory is shared by every process of the machine. pgserver
keeps the ids of the processes using it in ``postgres/.handle_pids.json``, under a
machine-wide file lock: ``start()`` attaches to a server already running (an admin
command next to the running server, say), and ``stop()`` shuts the server down only
when the last process using it lets go. Within one process the handles are counted
here, since pgserver keeps a single handle per data directory. A process that exits
without ``stop()`` lets go at exit (pgserver's atexit hook); one that is killed leaves
its id behind, which the next ``start()`` or ``stop()`` forgets.

Running as root, pgserver runs PostgreSQL as a system user ``pgserver`` (created with
useradd if missing), owning the data directory; it also makes every parent directory
of the data directory, and its own binaries, readable and traversable by all users.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import warnings
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Self
from urllib.parse import quote

from .errors import DatabaseUnavailable

__all__ = ["EmbeddedPostgres"]

# pgserver's handle on one data directory (a pgserver.PostgresServer), shared by every
# EmbeddedPostgres of this process on that directory, with their count.
_handles: dict[Path, tuple[Any, int]] = {}
_handles_lock = threading.Lock()


class EmbeddedPostgres:
    """A handle on the embedded PostgreSQL server of one data directory."""

    def __init__(self, pgdata: Path, server: Any) -> None:
        """Use :meth:`start`."""
        self._pgdata = pgdata
        self._server = server
        self._stopped = False

    @classmethod
    def start(cls, data_dir: Path) -> EmbeddedPostgres:
        """Start the server of ``data_dir``, creating its data if missing, or attach to
        the one already running. Blocking.

        Raises :class:`DatabaseUnavailable` if the server cannot be started.
        """
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            pgdata = (data_dir / "postgres").expanduser().resolve()
        except OSError as exc:
            raise DatabaseUnavailable(f"cannot create {data_dir}: {exc}") from exc
        with _handles_lock:
            server, count = _handles.get(pgdata, (None, 0))
            if server is None:
                server = _start_server(pgdata)
            _handles[pgdata] = (server, count + 1)
        return cls(pgdata, server)

    @property
    def pgdata(self) -> Path:
        """The PostgreSQL data directory, ``<data_dir>/postgres``."""
        return self._pgdata

    @property
    def dsn(self) -> str:
        """A DSN of the ``postgres`` database, as user ``postgres``, for asyncpg or libpq."""
        info = self._server.get_postmaster_info()
        if info.socket_dir is not None:
            # A unix socket: libpq and asyncpg take its directory as the host parameter.
            host = quote(str(info.socket_dir), safe="/")
            return f"postgresql://postgres@/postgres?host={host}&port={info.port}"
        return f"postgresql://postgres@{info.hostname}:{info.port}/postgres"

    def stop(self) -> None:
        """Let go of the server; it shuts down if no other handle, in this process or
        another, still uses it. Idempotent. Blocking."""
        with _handles_lock:
            if self._stopped:
                return
            self._stopped = True
            server, count = _handles[self._pgdata]
            if count > 1:
                _handles[self._pgdata] = (server, count - 1)
                return
            del _handles[self._pgdata]
            try:
                _forget_dead_processes(_import_pgserver(), self._pgdata)
                server.cleanup()  # leaves the server running if another process uses it
            except Exception as exc:  # pgserver raises anything from asserts to OSError
                raise DatabaseUnavailable(
                    f"cannot stop embedded PostgreSQL in {self._pgdata}: {exc!r}"
                ) from exc
            finally:
                # Make a later start() in this process register it again, from scratch.
                atexit.unregister(server._cleanup)
                type(server)._instances.pop(self._pgdata, None)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "started"
        return f"<EmbeddedPostgres {self._pgdata} {state}>"


def _start_server(pgdata: Path) -> Any:
    pgserver = _import_pgserver()
    try:
        _forget_dead_processes(pgserver, pgdata)
        return pgserver.get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:  # pgserver raises anything from asserts to TimeoutExpired
        raise DatabaseUnavailable(
            f"cannot start embedded PostgreSQL in {pgdata}: {exc!r}{_log_tail(pgdata)}"
        ) from exc


def _import_pgserver() -> ModuleType:
    # pgserver asks platformdirs for the runtime directory when it is imported, which
    # warns when XDG_RUNTIME_DIR is unset (as on CI and in containers); the fallback,
    # a directory under /tmp, suits it.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        try:
            import pgserver
        except ImportError as exc:
            raise DatabaseUnavailable(f"embedded PostgreSQL is not installed: {exc}") from exc
    return pgserver


def _forget_dead_processes(pgserver: ModuleType, pgdata: Path) -> None:
    """Drop from pgserver's list of processes using the server those that are gone.

    pgserver removes a process from the list at exit; one that was killed stays listed
    forever, and the server would then never be stopped by the last real user.
    """
    pids_file = pgdata / ".handle_pids.json"
    lock = getattr(pgserver.PostgresServer, "_lock", None)  # machine-wide file lock
    if lock is None or not pids_file.exists():
        return
    with lock:
        try:
            pids = json.loads(pids_file.read_text())
        except (OSError, ValueError):
            return
        alive = [pid for pid in pids if isinstance(pid, int) and pid > 0 and _process_exists(pid)]
        if alive != pids:
            pids_file.write_text(json.dumps(alive))


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user's
    return True


def _log_tail(pgdata: Path, lines: int = 20) -> str:
    try:
        text = (pgdata / "log").read_text(errors="replace")
    except OSError:
        return ""
    tail = "\n".join(text.splitlines()[-lines:])
    return f"\nlast lines of {pgdata / 'log'}:\n{tail}" if tail else ""
