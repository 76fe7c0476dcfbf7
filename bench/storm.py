"""Reconnect storm: an instance with N authenticated sockets restarts, and every client
comes back at once with the documented backoff and resumes from its ``lastSeq``.

    python -m bench.storm [--sockets 10000] [--variants term,kill] [--share 0.1]
                          [--publish-every 0.25] [--quick]

It starts an embedded PostgreSQL and a local Redis in a temporary folder, seeds
``--sockets`` users with a login session each (plus one for the publisher) and, for
each variant:

- starts instance **A** (:mod:`bench.server`, pinned to core 0 with PostgreSQL) and
  instance **B** (the publisher, pinned to core 1 with this process and Redis); both
  share Redis, as a scaled-out deployment does;
- opens one socket per user on A (``Authorization: Bearer``, 50 handshakes at a
  time) and waits for every ``session.ready``;
- publishes, through B's ``bench.publishMany``, one event every ``--publish-every``
  seconds (1) to ``--share`` of the users (every tenth user): stored durably, routed
  through Redis to A. It keeps publishing through the restart, so the clients of
  those users miss events while A is away and must get them on resume;
- restarts A: ``term`` sends SIGTERM (A finishes requests in flight and closes every
  socket with 1012), ``kill`` sends SIGKILL (the sockets just drop); once the old
  process is gone a new one starts on the same port;
- every client reconnects as ``docs/protocol.md`` ("Reconnecting") tells client
  authors and as ``clients/js`` does: attempt ``n`` (0, 1, 2 ...) after a drop waits
  a random time uniform in [0, min(30 s, 0.5 s x 2^n)]; after close 1012 at most
  0.5 s; a failed attempt (refused, no answer within 10 s) counts one more. It sends
  ``RTC-Last-Seq`` = the highest ``seq`` it received, and counts as *resumed* once
  its ``session.ready`` arrives;
- stops publishing once every client resumed, waits until every client has every
  event the log holds for its user (at most 30 s) and compares: for each user, the
  ``seq`` values received must be every value from the first ``session.ready``'s
  ``lastSeq`` + 1 to the user's last ``seq`` in PostgreSQL. *Lost*: missing ones
  (must be 0). *Duplicated*: received more than once; the protocol promises
  at-least-once only for events after the ``lastSeq`` a client resumes with, and
  this client always resumes with the highest it has, so every duplicate would be
  beyond that promise.

Reported, from the signal to A: time until 50 / 99 / 100 % of the clients resumed;
connection attempts; A's CPU from its start to 100 % resumed, less its start-up CPU
(measured on its first start, before any socket) and less what live delivery of the
published events costs it (A's CPU per second with every socket open and publishing
running, measured for 3 s before the restart, times the span: an upper bound, as
fewer sockets are there during the storm), per handshake; PostgreSQL's CPU over the
same span, less what publishing alone costs it (measured in the same 3 s), per
handshake; A's peak RSS (``VmHWM``) after the restart; the load client's CPU.

**How many sockets fit.** 10,000 sockets are 10,000 descriptors in A and 10,000 in
this process (the hard limit here is 20,000 per process; both raise to it). A costs
about 0.5-0.9 ms of CPU per authenticated handshake and PostgreSQL about 0.15 ms, both
on core 0: 10,000 handshakes are 7-10 s of that core, so the storm is CPU-bound on
the server's core, as it would be in production. This client costs about 0.1-0.2 ms
per handshake on core 1, shared with B, Redis and the machine's other load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import math
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import uvloop

from bench import seed
from bench.load import percentile
from bench.procfs import (
    cpu_seconds,
    own_cpu_seconds,
    postgres_cpu,
    postmaster_pid,
    raise_fd_limit,
)
from bench.run import ROOT, environment, free_port, save_results, say, server_env, tail
from bench.wire import HandshakeFailed, WsSocket
from rtc_server.scaleout.local_redis import RedisServer
from storage.database import Database, PoolSettings

SERVER_CPU, CLIENT_CPU = 0, 1
START_TIMEOUT = 60.0
OPEN_CONCURRENCY = 50
ATTEMPT_TIMEOUT = 10.0  # connect + handshake + session.ready, one attempt
RESUME_TIMEOUT = 300.0  # every client back, whatever happens
SETTLE_TIMEOUT = 30.0  # every event delivered after publishing stopped
BASE_DELAY, MAX_DELAY = 0.5, 30.0  # docs/protocol.md, "Reconnecting"
SERVICE_RESTART = 1012


def backoff(attempt: int, code: int | None) -> float:
    """The documented reconnect delay before attempt ``attempt`` (0 after a drop)."""
    if code == SERVICE_RESTART and attempt == 0:
        return random.uniform(0, BASE_DELAY)
    return random.uniform(0, min(MAX_DELAY, BASE_DELAY * 2**attempt))


def peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for {pid}")


class Client:
    """One user's app: a socket, what it received, and its reconnect loop."""

    __slots__ = (
        "index",
        "token",
        "user_id",
        "baseline",
        "last_seq",
        "seen",
        "duplicates",
        "out_of_order",
        "not_recovered",
        "attempts",
        "resumed_at",
        "sock",
        "ready",
    )

    def __init__(self, index: int, token: str) -> None:
        self.index = index
        self.token = token
        self.user_id = 0
        self.baseline: int | None = None  # lastSeq of the first session.ready
        self.last_seq = 0
        self.seen: set[int] = set()
        self.duplicates = 0
        self.out_of_order = 0
        self.not_recovered = 0
        self.attempts = 0  # connection attempts since the restart
        self.resumed_at: float | None = None
        self.sock: WsSocket | None = None
        self.ready: asyncio.Future[None] | None = None

    def on_text(self, sock: WsSocket, payload: bytes, now: float) -> None:
        if b'"session.ready"' in payload:
            state = orjson.loads(payload)["params"]
            self.user_id = state["userId"]
            if self.baseline is None:
                self.baseline = self.last_seq = state["lastSeq"]
            if not state["recovered"]:
                self.not_recovered += 1
            if self.ready is not None and not self.ready.done():
                self.ready.set_result(None)
            return
        if b'"seq":' not in payload:
            return
        seq = orjson.loads(payload)["params"]["seq"]
        if seq in self.seen:
            self.duplicates += 1
            return
        if seq != self.last_seq + 1:
            self.out_of_order += 1
        self.seen.add(seq)
        self.last_seq = max(self.last_seq, seq)


class Storm:
    """The clients of one variant, on instance A's port."""

    def __init__(self, port: int, tokens: list[str]) -> None:
        self.port = port
        self.clients = [Client(i, t) for i, t in enumerate(tokens)]
        self.restart_at: float | None = None  # monotonic time of the signal to A
        self.stopping = False
        self.all_resumed: asyncio.Future[None] | None = None
        self.resumed = 0
        self.failures: dict[str, int] = {}

    async def connect(self, client: Client) -> WsSocket:
        """One attempt: connect, handshake, session.ready (raises on failure)."""
        loop = asyncio.get_running_loop()
        headers = {"Authorization": f"Bearer {client.token}"}
        if client.baseline is not None:
            headers["RTC-Last-Seq"] = str(client.last_seq)
        sock = WsSocket(client.index, "127.0.0.1", self.port, "/ws", headers, client.on_text)
        client.ready = loop.create_future()
        try:
            async with asyncio.timeout(ATTEMPT_TIMEOUT):
                await loop.create_connection(functools.partial(_same, sock), "127.0.0.1", self.port)
                await sock.opened
                await client.ready
        except BaseException:
            sock.abort()
            raise
        return sock

    async def first_open(self) -> None:
        gate = asyncio.Semaphore(OPEN_CONCURRENCY)

        async def one(client: Client) -> None:
            async with gate:
                for attempt in range(3):
                    try:
                        client.sock = await self.connect(client)
                        return
                    except (OSError, HandshakeFailed, TimeoutError):
                        await asyncio.sleep(0.2 * (attempt + 1))
                raise RuntimeError(f"socket {client.index} did not open")

        await asyncio.gather(*(one(c) for c in self.clients))

    async def live(self, client: Client) -> None:
        """Reconnect whenever the socket closes, as the documented schedule says."""
        loop = asyncio.get_running_loop()
        while not self.stopping:
            sock = client.sock
            assert sock is not None
            await sock.closed
            if self.stopping:
                return
            code = sock.close_code
            attempt = 0
            while True:
                await asyncio.sleep(backoff(attempt, code))
                client.attempts += 1
                try:
                    client.sock = await self.connect(client)
                    break
                except (OSError, HandshakeFailed, TimeoutError) as exc:
                    name = type(exc).__name__
                    if isinstance(exc, HandshakeFailed):  # the HTTP status, or how it broke
                        name += f" ({str(exc)[:40]})"
                    self.failures[name] = self.failures.get(name, 0) + 1
                    attempt += 1
                    code = None
            if client.resumed_at is None and self.restart_at is not None:
                client.resumed_at = loop.time()
                self.resumed += 1
                if self.resumed == len(self.clients) and self.all_resumed is not None:
                    self.all_resumed.set_result(None)

    def close(self) -> None:
        self.stopping = True
        for client in self.clients:
            if client.sock is not None:
                client.sock.abort()


@dataclass
class Instance:
    process: subprocess.Popen[bytes]
    port: int
    log: Path


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.jwt_secret = secrets.token_hex(32)
        self.children: list[subprocess.Popen[bytes]] = []
        self.redis = RedisServer()
        self.tokens: list[str] = []
        self._starts = 0

    def prepare(self) -> None:
        say(f"starting the embedded PostgreSQL (core {SERVER_CPU}) and a local Redis")
        self.postgres = seed.start_postgres(self.workdir / "pg", {SERVER_CPU})
        self.dsn = self.postgres.dsn
        self.redis.start()
        count = self.args.sockets + 1
        say(f"creating {count:,} users with a login session each, minting their tokens")
        self.tokens = asyncio.run(seed.create_users(self.dsn, count, self.jwt_secret.encode()))

    def start_instance(self, port: int, core: int, name: str) -> Instance:
        self._starts += 1
        log = self.workdir / f"server-{self._starts}-{name}.log"
        env = {
            **os.environ,
            **server_env(
                port=port,
                http_port=free_port(),
                data_dir=self.workdir / "data",
                dsn=self.dsn,
                jwt_secret=self.jwt_secret,
                rate=1_000_000,
            ),
            "RTC_REDIS__URL": self.redis.url,
            "RTC_REDIS__PREFIX": "storm:",
        }
        with open(log, "wb") as out:
            process = subprocess.Popen(
                ["taskset", "-c", str(core), sys.executable, "-m", "bench.server"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.children.append(process)
        return Instance(process, port, log)

    async def listening(self, instance: Instance) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if instance.process.poll() is not None:
                raise RuntimeError("server exited:\n" + tail(instance.log))
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", instance.port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.02)
        raise RuntimeError("server did not listen:\n" + tail(instance.log))

    def stop(self, process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if process in self.children:
            self.children.remove(process)

    def variant(self, kind: str) -> dict[str, Any]:
        asyncio.run(seed.forget_events(self.dsn))
        return uvloop.run(self._variant(kind))

    async def _variant(self, kind: str) -> dict[str, Any]:
        args = self.args
        loop = asyncio.get_running_loop()
        postmaster = postmaster_pid(self.postgres.pgdata)
        port = free_port()
        a = self.start_instance(port, SERVER_CPU, "A")
        b = self.start_instance(free_port(), CLIENT_CPU, "B")
        publisher: asyncio.Task[None] | None = None
        storm = Storm(port, self.tokens[: args.sockets])
        lives: list[asyncio.Task[None]] = []
        control: WsSocket | None = None
        try:
            await self.listening(a)
            await asyncio.sleep(1.0)  # whatever A still does after listening
            startup_cpu = cpu_seconds(a.process.pid)
            await self.listening(b)
            control, calls = await _control(b.port, self.tokens[-1])
            say(f"{kind}: opening {args.sockets:,} sockets on A")
            opened = loop.time()
            await storm.first_open()
            say(f"  open in {loop.time() - opened:.1f} s")
            targets = [c for c in storm.clients if c.index % round(1 / args.share) == 0]
            user_ids = [c.user_id for c in targets]
            published = {"calls": 0, "failed": 0}
            publisher = loop.create_task(
                _publish(control, calls, user_ids, args.publish_every, published)
            )
            lives = [loop.create_task(storm.live(c)) for c in storm.clients]
            await asyncio.sleep(2.0)  # publishing in its stride
            # What publishing alone costs A (live delivery) and PostgreSQL, per second.
            a0, pg0, t0 = cpu_seconds(a.process.pid), _pg(postmaster), loop.time()
            await asyncio.sleep(3.0)
            a_rate = (cpu_seconds(a.process.pid) - a0) / (loop.time() - t0)
            pg_rate = (_pg(postmaster) - pg0) / (loop.time() - t0)

            say(f"  restarting A ({'SIGTERM' if kind == 'term' else 'SIGKILL'})")
            storm.all_resumed = loop.create_future()
            client_cpu0 = own_cpu_seconds()
            pg_start = _pg(postmaster)
            storm.restart_at = loop.time()
            a.process.send_signal(signal.SIGTERM if kind == "term" else signal.SIGKILL)
            await loop.run_in_executor(None, a.process.wait, 60)
            stopped = loop.time() - storm.restart_at
            self.children.remove(a.process)
            a = self.start_instance(port, SERVER_CPU, "A")
            async with asyncio.timeout(RESUME_TIMEOUT):
                await self.listening(a)
                listening = loop.time() - storm.restart_at
                await storm.all_resumed
            done = loop.time()
            server_cpu = cpu_seconds(a.process.pid)
            pg_storm = _pg(postmaster) - pg_start
            client_cpu = own_cpu_seconds() - client_cpu0
            peak_kib = peak_rss_kib(a.process.pid)
            publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publisher
            say(f"  all resumed after {done - storm.restart_at:.2f} s; checking the events")
            lost, expected = await self.settle(storm)
        finally:
            storm.close()
            for task in lives:
                task.cancel()
            if publisher is not None:
                publisher.cancel()
            if control is not None:
                control.abort()
            await asyncio.sleep(0.1)
            self.stop(a.process)
            self.stop(b.process)
        n = len(storm.clients)
        seconds = sorted(c.resumed_at - storm.restart_at for c in storm.clients if c.resumed_at)
        span = done - storm.restart_at
        attempts = sum(c.attempts for c in storm.clients)
        # Less start-up, and less live delivery at the steady rate (an upper bound of
        # it: during the storm fewer sockets are there to deliver to).
        handshake_cpu = max(0.0, server_cpu - startup_cpu - a_rate * span)
        return {
            "variant": kind,
            "sockets": n,
            "targets": len(targets),
            "publish_calls": published["calls"],
            "publish_failed": published["failed"],
            "old_process_gone_s": stopped,
            "listening_s": listening,
            "resumed_p50_s": percentile(seconds, 50),
            "resumed_p99_s": percentile(seconds, 99),
            "resumed_all_s": span,
            "attempts": attempts,
            "attempts_per_client": attempts / n,
            "failures": storm.failures,
            "events_expected": expected,
            "events_lost": lost,
            "events_duplicated": sum(c.duplicates for c in storm.clients),
            "events_out_of_order": sum(c.out_of_order for c in storm.clients),
            "not_recovered": sum(c.not_recovered for c in storm.clients),
            "server_startup_cpu_s": startup_cpu,
            "server_publishing_cpu_per_s": a_rate,
            "server_cpu_s": server_cpu,
            "server_cpu_us_per_handshake_raw": max(0.0, server_cpu - startup_cpu) / n * 1e6,
            "server_cpu_us_per_handshake": handshake_cpu / n * 1e6,
            "postgres_cpu_s": pg_storm,
            "postgres_publishing_cpu_per_s": pg_rate,
            "postgres_cpu_us_per_handshake": max(0.0, pg_storm - pg_rate * span) / n * 1e6,
            "postgres_cpu_us_per_handshake_raw": pg_storm / n * 1e6,
            "peak_rss_mib": peak_kib / 1024,
            "client_cpu_us_per_handshake": client_cpu / n * 1e6,
        }

    async def settle(self, storm: Storm) -> tuple[int, int]:
        """(events missing, events expected) once delivery settled (at most 30 s)."""
        db = await Database.connect(PoolSettings(dsn=self.dsn, min_size=1, max_size=1))
        try:
            rows = await db.fetch(
                "SELECT user_id, last_seq FROM user_event_cursors WHERE user_id = ANY($1)",
                [c.user_id for c in storm.clients],
            )
        finally:
            await db.close()
        last = {r["user_id"]: r["last_seq"] for r in rows}
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while True:
            lost = expected = 0
            for c in storm.clients:
                assert c.baseline is not None
                want = range(c.baseline + 1, last.get(c.user_id, 0) + 1)
                expected += len(want)
                lost += sum(1 for seq in want if seq not in c.seen)
            if lost == 0 or time.monotonic() > deadline:
                return lost, expected
            await asyncio.sleep(0.5)

    def close(self) -> None:
        for child in list(self.children):
            with contextlib.suppress(Exception):
                self.stop(child, signal.SIGKILL)
        self.redis.close()
        if getattr(self, "postgres", None) is not None:
            say("stopping PostgreSQL")
            self.postgres.stop()


async def _control(port: int, token: str) -> tuple[WsSocket, dict[int, asyncio.Future[Any]]]:
    """The publisher's socket on B and its pending calls by id."""
    loop = asyncio.get_running_loop()
    calls: dict[int, asyncio.Future[Any]] = {}
    ready: asyncio.Future[None] = loop.create_future()

    def on_text(sock: WsSocket, payload: bytes, now: float) -> None:
        message = orjson.loads(payload)
        if message.get("method") == "session.ready" and not ready.done():
            ready.set_result(None)
        future = calls.pop(message.get("id", -1), None)
        if future is not None and not future.done():
            future.set_result(message)

    sock = WsSocket(0, "127.0.0.1", port, "/ws", {"Authorization": f"Bearer {token}"}, on_text)
    async with asyncio.timeout(30):
        await loop.create_connection(functools.partial(_same, sock), "127.0.0.1", port)
        await sock.opened
        await ready
    return sock, calls


async def _publish(
    control: WsSocket,
    calls: dict[int, asyncio.Future[Any]],
    user_ids: list[int],
    every: float,
    counts: dict[str, int],
) -> None:
    """One ``bench.publishMany`` to ``user_ids`` every ``every`` seconds (on B)."""
    loop = asyncio.get_running_loop()
    request_id = 0
    next_at = loop.time()
    while True:
        request_id += 1
        future: asyncio.Future[Any] = loop.create_future()
        calls[request_id] = future
        control.send_text(
            orjson.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": request_id,
                    "method": "bench.publishMany",
                    "params": {"userIds": user_ids, "round": request_id},
                }
            )
        )
        try:
            async with asyncio.timeout(30):
                answer = await future
            counts["failed" if "error" in answer else "calls"] += 1
        except TimeoutError:
            counts["failed"] += 1
        next_at += every
        await asyncio.sleep(max(0.0, next_at - loop.time()))


def _pg(postmaster: int) -> float:
    return sum(postgres_cpu(postmaster).values())


def _same(sock: WsSocket) -> WsSocket:
    return sock


def table(rows: list[dict[str, Any]]) -> str:
    def fmt(value: float, digits: int = 0) -> str:
        return "-" if math.isnan(value) else f"{value:,.{digits}f}"

    header = (
        "| restart | sockets | A gone / listening | resumed 50 % / 99 % / 100 % | attempts per "
        "client | events expected / lost / duplicated / out of order | server CPU per "
        "handshake (raw) | PostgreSQL CPU per handshake (raw) | peak RSS | client CPU per "
        "handshake |"
    )
    lines = [header, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(
            f"| {'SIGTERM' if r['variant'] == 'term' else 'SIGKILL'} | {r['sockets']:,} "
            f"| {r['old_process_gone_s']:.2f} / {r['listening_s']:.2f} s "
            f"| {fmt(r['resumed_p50_s'], 2)} / {fmt(r['resumed_p99_s'], 2)} / "
            f"{r['resumed_all_s']:.2f} s | {r['attempts_per_client']:.2f} "
            f"| {r['events_expected']:,} / {r['events_lost']} / {r['events_duplicated']} / "
            f"{r['events_out_of_order']} | {r['server_cpu_us_per_handshake']:,.0f} "
            f"({r['server_cpu_us_per_handshake_raw']:,.0f}) µs "
            f"| {r['postgres_cpu_us_per_handshake']:,.0f} "
            f"({r['postgres_cpu_us_per_handshake_raw']:,.0f}) µs | {r['peak_rss_mib']:.0f} MiB "
            f"| {r['client_cpu_us_per_handshake']:,.0f} µs |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.storm", description=__doc__.split("\n\n")[0])
    p.add_argument("--sockets", type=int, help="authenticated sockets on A (default 10000)")
    p.add_argument("--variants", default="term,kill", help="restarts to run (term, kill)")
    p.add_argument("--share", type=float, default=0.1, help="users that get events (0.1)")
    p.add_argument("--publish-every", type=float, default=1.0, help="seconds between events (1.0)")
    p.add_argument("--quick", action="store_true", help="1,000 sockets")
    args = p.parse_args(argv)
    if args.sockets is None:
        args.sockets = 1000 if args.quick else 10_000
    args.variants = [v for v in args.variants.split(",") if v]
    if set(args.variants) - {"term", "kill"} or not args.variants:
        p.error("--variants: term and/or kill")
    if not 0 < args.share <= 1:
        p.error("--share: in (0, 1]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit()

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    started = datetime.now()
    workdir = Path(tempfile.mkdtemp(prefix="rtc-storm-"))
    bench = Bench(args, workdir)
    rows: list[dict[str, Any]] = []
    try:
        bench.prepare()
        os.sched_setaffinity(0, {CLIENT_CPU})
        for kind in args.variants:
            rows.append(bench.variant(kind))
            r = rows[-1]
            say(
                f"  {kind}: 100 % resumed in {r['resumed_all_s']:.2f} s, lost "
                f"{r['events_lost']}, duplicated {r['events_duplicated']}, "
                f"{r['server_cpu_us_per_handshake']:.0f} us server CPU per handshake"
            )
    except KeyboardInterrupt:
        say("interrupted: stopping everything")
        return 130
    except RuntimeError as exc:
        say(f"failed: {exc}")
        return 1
    finally:
        bench.close()
        shutil.rmtree(workdir, ignore_errors=True)
    text = table(rows)
    print(text)
    save_results(
        started,
        "-storm",
        {"args": vars(args), "environment": environment(), "rows": rows, "table": text},
    )
    lost = sum(r["events_lost"] for r in rows)
    return 1 if lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
