"""The ceiling for this stack: a bare websockets + uvloop + orjson JSON-RPC server.

    python -m bench.bare_server --port 9000

It does only what the benchmark asks of a server, the idiomatic way, with the same
websockets settings as ours (no compression, same frame limit and keepalive):

- ``system.ping`` → ``{"jsonrpc":"2.0","id":…,"result":{"pong":true,"serverTime":…}}``,
  the same shape our server answers;
- ``bench.publishMany`` → one pre-encoded notification of the shape of our events
  (``{"jsonrpc":"2.0","method":"bench.broadcast","params":{"seq":…,"data":…}}``) sent
  with ``websockets.broadcast`` to every socket but the caller;
- ``bench.gc`` → collect garbage and trim the heap before the runner reads the RSS.

No authentication, no per-socket state beyond websockets' own, no metrics, no database.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from typing import Any

import orjson
import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

from bench.procfs import raise_fd_limit, release_memory


def event_frame(seq: int, data: dict[str, Any]) -> bytes:
    """A notification shaped like our server's events (``kernel.rpc.codec``)."""
    return (
        b'{"jsonrpc":"2.0","method":"bench.broadcast","params":{"seq":'
        + str(seq).encode()
        + b',"data":'
        + orjson.dumps(data)
        + b"}}"
    )


class BareServer:
    def __init__(self) -> None:
        self.connections: set[ServerConnection] = set()
        self.seq = 0

    async def handle(self, ws: ServerConnection) -> None:
        self.connections.add(ws)
        try:
            async for message in ws:
                request = orjson.loads(message)
                result = self.answer(ws, request.get("method"), request.get("params") or {})
                await ws.send(
                    orjson.dumps({"jsonrpc": "2.0", "id": request.get("id"), "result": result}),
                    text=True,
                )
        except ConnectionClosed:
            pass
        finally:
            self.connections.discard(ws)

    def answer(self, ws: ServerConnection, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "system.ping":
            return {"pong": True, "serverTime": int(time.time() * 1000)}
        if method == "bench.publishMany":
            return self.publish(ws, params)
        if method == "bench.gc":
            return {"collected": release_memory()}
        return {"error": f"no method {method!r}"}

    def publish(self, caller: ServerConnection, params: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        self.seq += 1
        frame = event_frame(self.seq, {"round": params.get("round", 0), "note": "fan-out"})
        recipients = [ws for ws in self.connections if ws is not caller]
        broadcast(recipients, frame, text=True)
        elapsed = time.perf_counter() - started
        return {"users": len(recipients), "serverMs": elapsed * 1000, "deliverMs": elapsed * 1000}


async def run(host: str, port: int) -> None:
    server = BareServer()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve(
        server.handle,
        host,
        port,
        compression=None,
        max_size=65536,
        ping_interval=25.0,
        ping_timeout=20.0,
        close_timeout=5,
        server_header=None,
    ):
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    raise_fd_limit()
    uvloop.run(run(args.host, args.port))


if __name__ == "__main__":
    main()
