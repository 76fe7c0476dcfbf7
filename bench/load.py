"""The load client: one process (pinned to core 1 by the runner) per measurement.

    python -m bench.load SPEC.json OUT.json

``SPEC.json`` names the server (address, pid), the access tokens to connect with
(``null`` for the bare server: no authentication) and one phase:

- ``idle``: open ``sockets`` sockets and read the server's RSS before and after (both
  after ``bench.gc`` and a settle pause); optionally run fan-out rounds on them;
- ``ping``: for each count, sockets send ``system.ping`` in a closed loop (one request
  outstanding per socket) through a warm-up and a measured window.

Sockets are :class:`bench.wire.WsSocket` (raw frames, see there why), opened at most
``concurrency`` at a time so the server's accept backlog (asyncio's default, 100)
never overflows. A socket with a token counts as open once ``session.ready`` arrives.
Every wait is bounded; the phase fails rather than hang.
"""

from __future__ import annotations

import asyncio
import functools
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import uvloop

from bench.procfs import (
    core_seconds,
    cpu_seconds,
    cpu_split,
    own_cpu_seconds,
    postgres_cpu,
    raise_fd_limit,
    rss_kib,
)
from bench.wire import HandshakeFailed, WsSocket, text_frame

OPEN_TIMEOUT = 30.0  # one socket: connect, handshake, session.ready
OPEN_ATTEMPTS = 3
PHASE_TIMEOUT = 900.0  # the whole phase, whatever happens
CALL_TIMEOUT = 60.0
FANOUT_TIMEOUT = 30.0
CLOSE_TIMEOUT = 15.0

# What a desktop browser adds to a websocket handshake (Chrome, no cookies). The
# server keeps the request's headers for the socket's life, so they cost memory.
BROWSER_HEADERS = {
    "Pragma": "no-cache",
    "Cache-Control": "no-cache",
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Origin": "https://app.buildxpert.example",
    "Accept-Encoding": "gzip, deflate, br, zstd",
    "Accept-Language": "en-IN,en;q=0.9,hi;q=0.8",
    "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits",
}


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


class LoadClient:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.host: str = spec["host"]
        self.port: int = spec["port"]
        self.path: str = spec["path"]
        self.pid: int = spec["pid"]
        self.server_cpu: int = spec["server_cpu"]
        self.postmaster: int | None = spec.get("postmaster")
        self.concurrency: int = spec["concurrency"]
        self.browser_headers: bool = spec.get("browser_headers", False)
        self._ids = 0
        self._calls: dict[int, asyncio.Future[Any]] = {}

    # -- opening and closing --

    async def open_many(self, tokens: list[str | None]) -> list[WsSocket]:
        gate = asyncio.Semaphore(self.concurrency)
        opened: list[WsSocket | None] = [None] * len(tokens)

        async def one(index: int, token: str | None) -> None:
            async with gate:
                opened[index] = await self._open(index, token)

        await asyncio.gather(*(one(i, t) for i, t in enumerate(tokens)))
        return [s for s in opened if s is not None]

    async def _open(self, index: int, token: str | None) -> WsSocket:
        loop = asyncio.get_running_loop()
        headers = dict(BROWSER_HEADERS) if self.browser_headers else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        failure: BaseException | None = None
        for attempt in range(OPEN_ATTEMPTS):
            sock = WsSocket(index, self.host, self.port, self.path, headers, _on_open_text)
            sock.waiter = loop.create_future() if token else None
            try:
                async with asyncio.timeout(OPEN_TIMEOUT):
                    await loop.create_connection(
                        functools.partial(_same, sock), self.host, self.port
                    )
                    await sock.opened
                    if sock.waiter is not None:
                        await sock.waiter
                return sock
            except (OSError, HandshakeFailed, TimeoutError) as exc:
                sock.abort()
                failure = exc
                await asyncio.sleep(0.2 * (attempt + 1))
        raise RuntimeError(f"socket {index} did not open: {failure!r}")

    async def close_many(self, sockets: list[WsSocket]) -> int:
        """Closing handshake on every socket; aborts what is still open after a while."""
        for sock in sockets:
            sock.start_close()
        pending = [s.closed for s in sockets if not s.closed.done()]
        if pending:
            await asyncio.wait(pending, timeout=CLOSE_TIMEOUT)
        aborted = 0
        for sock in sockets:
            if not sock.closed.done():
                sock.abort()
                aborted += 1
        await asyncio.sleep(0)
        return aborted

    # -- the control socket: requests to the server under test --

    def control(self, sock: WsSocket) -> None:
        sock.on_text = self._control_text

    def _control_text(self, sock: WsSocket, payload: bytes, now: float) -> None:
        message = orjson.loads(payload)
        if not isinstance(message, dict) or "id" not in message:
            return
        future = self._calls.pop(message["id"], None)
        if future is not None and not future.done():
            future.set_result((message, now))

    async def call(
        self,
        sock: WsSocket,
        method: str,
        params: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], float, float]:
        """Send a request; returns (result, sent_at, answered_at)."""
        self._ids += 1
        request_id = self._ids
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[request_id] = future
        frame = text_frame(
            orjson.dumps(
                {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}
            )
        )
        sent_at = time.monotonic()
        sock.write(frame)
        async with asyncio.timeout(CALL_TIMEOUT):
            message, answered_at = await future
        if "error" in message:
            raise RuntimeError(f"{method} failed: {message['error']}")
        result = message["result"]
        if isinstance(result, dict) and "error" in result:
            raise RuntimeError(f"{method} failed: {result['error']}")
        return result, sent_at, answered_at

    async def settled_rss(self, control: WsSocket, settle: float) -> int:
        await self.call(control, "bench.gc")
        await asyncio.sleep(settle)
        await self.call(control, "bench.gc")
        return rss_kib(self.pid)

    # -- phases --

    async def idle(self, spec: dict[str, Any]) -> dict[str, Any]:
        tokens: dict[str, Any] = spec["tokens"]
        count: int = spec["sockets"]
        settle: float = spec["settle"]
        (control,) = await self.open_many([tokens["control"]])
        self.control(control)
        rss_started = rss_kib(self.pid)
        # Warm up: code paths, the database pool, caches. Then close those sockets.
        warm = await self.open_many(tokens["warmup"])
        await self.close_many(warm)
        rss_before = await self.settled_rss(control, settle)
        pg0 = postgres_cpu(self.postmaster) if self.postmaster else {}
        cpu0, t0 = cpu_seconds(self.pid), time.monotonic()
        sockets = await self.open_many(tokens["sockets"][:count])
        open_seconds = time.monotonic() - t0
        open_cpu = cpu_seconds(self.pid) - cpu0
        pg1 = postgres_cpu(self.postmaster) if self.postmaster else {}
        # A backend born meanwhile counts whole (it started at 0).
        open_pg = sum(pg1[p] - pg0.get(p, 0.0) for p in pg1)
        rss_after = await self.settled_rss(control, settle)
        result: dict[str, Any] = {
            "sockets": len(sockets),
            "rss_started_kib": rss_started,
            "rss_before_kib": rss_before,
            "rss_after_kib": rss_after,
            "kib_per_socket": (rss_after - rss_before) / len(sockets),
            "open_seconds": open_seconds,
            "open_per_second": len(sockets) / open_seconds,
            "server_cpu_us_per_open": open_cpu / len(sockets) * 1e6,
            # The bare server has no database: PostgreSQL idles (its background work).
            "postgres_cpu_us_per_open": open_pg / len(sockets) * 1e6,
            "protocol_errors": sum(s.protocol_errors for s in sockets),
        }
        if spec.get("fanout_rounds"):
            result["fanout"] = await self.fanout(
                control, sockets, spec["fanout_rounds"], spec.get("fanout_warmup", 1)
            )
        result["aborted_at_close"] = await self.close_many([*sockets, control])
        return result

    async def fanout(
        self, control: WsSocket, sockets: list[WsSocket], rounds: int, warmup: int
    ) -> dict[str, Any]:
        run = FanoutRound(sockets, self.postmaster)
        measured = []
        for number in range(warmup + rounds):
            outcome = await run.once(self, control, number)
            outcome["warmup"] = number < warmup
            measured.append(outcome)
            await asyncio.sleep(0.5)
        kept = [m for m in measured if not m["warmup"]]
        last = [m["last_ms"] for m in kept]
        return {
            "sockets": len(sockets),
            "rounds": measured,
            "last_ms_median": statistics.median(last),
            "last_ms_best": min(last),
            "p50_ms_median": statistics.median(m["p50_ms"] for m in kept),
            "first_ms_median": statistics.median(m["first_ms"] for m in kept),
            "server_ms_median": statistics.median(m["server_ms"] for m in kept),
            "deliver_ms_median": statistics.median(m["deliver_ms"] for m in kept),
            "client_cpu_ms_median": statistics.median(m["client_cpu_ms"] for m in kept),
            # /proc counts in ticks of 10 ms: the mean over the rounds is finer.
            "postgres_cpu_ms_mean": statistics.fmean(m["postgres_cpu_ms"] for m in kept),
        }

    async def ping(self, spec: dict[str, Any]) -> dict[str, Any]:
        tokens: list[str | None] = spec["tokens"]["sockets"]
        sockets: list[WsSocket] = []
        results = []
        for count in spec["counts"]:
            sockets += await self.open_many(tokens[len(sockets) : count])
            run = PingRun(sockets[:count], self.pid, self.server_cpu)
            results.append(await run.measure(spec["warmup"], spec["duration"], spec["windows"]))
        await self.close_many(sockets)
        return {"runs": results}


def _same(sock: WsSocket) -> WsSocket:
    return sock


def _on_open_text(sock: WsSocket, payload: bytes, now: float) -> None:
    waiter = sock.waiter
    if waiter is not None and not waiter.done() and b'"session.ready"' in payload:
        waiter.set_result(None)


class FanoutRound:
    """One trigger; the time from sending it until each socket has the event."""

    def __init__(self, sockets: list[WsSocket], postmaster: int | None) -> None:
        self.sockets = sockets
        self.postmaster = postmaster
        self.waiting = 0
        self.all_received: asyncio.Future[None] | None = None
        for sock in sockets:
            sock.on_text = self.on_text

    def on_text(self, sock: WsSocket, payload: bytes, now: float) -> None:
        if sock.received_at == 0.0 and b'"bench.broadcast"' in payload:
            sock.received_at = now
            self.waiting -= 1
            if self.waiting == 0 and self.all_received is not None:
                self.all_received.set_result(None)

    async def once(self, client: LoadClient, control: WsSocket, number: int) -> dict[str, Any]:
        for sock in self.sockets:
            sock.received_at = 0.0
        self.waiting = len(self.sockets)
        self.all_received = asyncio.get_running_loop().create_future()
        pg_before = self._postgres_cpu()
        cpu_before = time.process_time()
        answer, sent_at, answered_at = await client.call(
            control, "bench.publishMany", {"round": number}
        )
        async with asyncio.timeout(FANOUT_TIMEOUT):
            await self.all_received
        client_cpu = time.process_time() - cpu_before
        postgres = self._postgres_cpu() - pg_before
        times = sorted(s.received_at - sent_at for s in self.sockets)
        return {
            "recipients": answer["users"],
            "first_ms": times[0] * 1000,
            "p50_ms": percentile(times, 50) * 1000,
            "p99_ms": percentile(times, 99) * 1000,
            "last_ms": times[-1] * 1000,
            "answer_ms": (answered_at - sent_at) * 1000,
            "server_ms": answer["serverMs"],
            "deliver_ms": answer["deliverMs"],
            # This process (core 1), and PostgreSQL (all its processes; 0 without it).
            "client_cpu_ms": client_cpu * 1000,
            "postgres_cpu_ms": postgres * 1000,
        }

    def _postgres_cpu(self) -> float:
        if self.postmaster is None:
            return 0.0
        return sum(postgres_cpu(self.postmaster).values())


class PingRun:
    """``system.ping`` in a closed loop on every socket; counts answers in a window."""

    def __init__(self, sockets: list[WsSocket], pid: int, server_cpu: int) -> None:
        self.sockets = sockets
        self.pid = pid
        self.server_cpu = server_cpu
        self.running = True
        self.window_start = math.inf
        self.window_end = math.inf
        self.answered = 0
        self.errors = 0
        self.outstanding = 0
        self.latencies: list[float] = []

    def send(self, sock: WsSocket) -> None:
        sock.next_id += 1
        sock.sent_at = time.monotonic()
        sock.write(text_frame(b'{"jsonrpc":"2.0","id":%d,"method":"system.ping"}' % sock.next_id))

    def on_text(self, sock: WsSocket, payload: bytes, now: float) -> None:
        if sock.sent_at == 0.0:
            return
        if b'"result"' not in payload:
            self.errors += 1
        if self.window_start <= now < self.window_end:
            self.answered += 1
            self.latencies.append(now - sock.sent_at)
        if self.running:
            self.send(sock)
        else:
            sock.sent_at = 0.0
            self.outstanding -= 1

    async def measure(self, warmup: float, duration: float, windows: int) -> dict[str, Any]:
        """Warm up, then ``windows`` consecutive windows of ``duration`` seconds each.

        Rates and CPU per request are the median over the windows; latency
        percentiles are over every answer of every window.
        """
        for sock in self.sockets:
            sock.on_text = self.on_text
            sock.sent_at = 0.0
        for sock in self.sockets:
            self.send(sock)
        await asyncio.sleep(warmup)
        measured = []
        all_latencies: list[float] = []
        for _ in range(windows):
            self.answered, self.errors, self.latencies = 0, 0, []
            (user0, system0), client0 = cpu_split(self.pid), own_cpu_seconds()
            core0 = core_seconds(self.server_cpu)
            self.window_start = time.monotonic()
            self.window_end = math.inf
            await asyncio.sleep(duration)
            self.window_end = time.monotonic()
            (user1, system1), client1 = cpu_split(self.pid), own_cpu_seconds()
            core1 = core_seconds(self.server_cpu)
            server0, server1 = user0 + system0, user1 + system1
            answered = max(1, self.answered)
            window = self.window_end - self.window_start
            core = {k: (core1[k] - core0[k]) / window for k in core0}
            latencies = sorted(self.latencies)
            all_latencies += latencies
            measured.append(
                {
                    "seconds": window,
                    "answered": self.answered,
                    "errors": self.errors,
                    "requests_per_second": self.answered / window,
                    "p50_ms": percentile(latencies, 50) * 1000,
                    "p99_ms": percentile(latencies, 99) * 1000,
                    "server_cpu_us_per_request": (server1 - server0) / answered * 1e6,
                    "server_user_us_per_request": (user1 - user0) / answered * 1e6,
                    "server_system_us_per_request": (system1 - system0) / answered * 1e6,
                    "server_cpu_busy": (server1 - server0) / window,
                    "client_cpu_busy": (client1 - client0) / window,
                    # What else ran on the server's core: other processes, interrupts and
                    # softirqs (loopback TCP), the hypervisor.
                    "core_other_tasks": max(0.0, core["tasks"] - (server1 - server0) / window),
                    "core_irq": core["irq"],
                    "core_steal": core["steal"],
                }
            )
        self.running = False
        self.outstanding = sum(1 for s in self.sockets if s.sent_at != 0.0)
        deadline = time.monotonic() + 10
        while self.outstanding > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        all_latencies.sort()

        def median(key: str) -> float:
            return statistics.median(w[key] for w in measured)

        return {
            "sockets": len(self.sockets),
            "window_seconds": duration,
            "windows": measured,
            "answered": sum(w["answered"] for w in measured),
            "errors": sum(w["errors"] for w in measured),
            "unanswered_at_end": self.outstanding,
            "requests_per_second": median("requests_per_second"),
            "p50_ms": percentile(all_latencies, 50) * 1000,
            "p99_ms": percentile(all_latencies, 99) * 1000,
            "max_ms": all_latencies[-1] * 1000 if all_latencies else math.nan,
            "server_cpu_us_per_request": median("server_cpu_us_per_request"),
            "server_cpu_busy": median("server_cpu_busy"),
            "client_cpu_busy": median("client_cpu_busy"),
            "core_other_tasks": median("core_other_tasks"),
            "core_irq": median("core_irq"),
            "core_steal": median("core_steal"),
        }


async def main_async(spec: dict[str, Any]) -> dict[str, Any]:
    client = LoadClient(spec)
    async with asyncio.timeout(PHASE_TIMEOUT):
        if spec["phase"] == "idle":
            return await client.idle(spec)
        if spec["phase"] == "ping":
            return await client.ping(spec)
    raise ValueError(f"unknown phase {spec['phase']!r}")


def main() -> int:
    spec_path, out_path = Path(sys.argv[1]), Path(sys.argv[2])
    spec = orjson.loads(spec_path.read_bytes())
    raise_fd_limit()
    result = uvloop.run(main_async(spec))
    out_path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
