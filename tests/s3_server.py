"""A local S3-protocol server for the tests: moto's server mode in a process of its own
(so what a test measures of its own process is not the server's), on a free loopback
port it picks itself, holding objects in memory. It comes with the test extra
(``moto[server]``); nothing is installed by hand.

    server = LocalS3(); server.start(); ... server.endpoint ...; server.close()
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

# Runs in the child: prints the port, serves until its stdin closes (the tests' process
# ending, even killed, closes it: no server outlives the run).
_SERVE = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"""

REGION = "us-east-1"
# moto takes any credentials; botocore needs some.
ACCESS_KEY_ID = "test-access-key"
SECRET_ACCESS_KEY = "test-secret-key"


def s3_client(endpoint: str) -> Any:
    """A client of the server at ``endpoint`` (``async with``), to look behind a store's
    back or prepare a bucket."""
    from aiobotocore.session import get_session

    return get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )


class LocalS3:
    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _SERVE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()  # moto imports in about a second
        if not line.strip().isdigit():
            self.close()
            raise RuntimeError("the local S3 server (moto) did not start")
        self.port = int(line)

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
