"""Scale-out benchmark: publish-to-delivery latency across instances, and the most
events per second the cluster delivers before its p99 passes 50 ms.

    python -m bench.cluster [--users 3000] [--rates 250,500,1000,2000,3000,4000]
                            [--duration 5] [--instances 3]

It starts an embedded PostgreSQL and a local Redis in a temporary folder, seeds
``--users`` users with a login session each, and measures two set-ups in turn:

- **single**: one instance (:mod:`bench.server`, in-process bus), every socket on it;
- **cluster**: ``--instances`` instances sharing Redis, the sockets spread evenly
  over them, and every event published on an instance *other* than the one holding
  its recipient's socket (so every event crosses Redis).

For each offered rate, this process (the load client, uvloop) sends
``bench.publishMany {userIds: [u]}`` requests in an open loop at that rate, each for
one random user, and receives the events on the users' sockets. Latency is the wall
time from the publish call on the server (``at`` in the event) to the event's arrival
here: durable write, Redis routing and the delivering instance's send included. The
server processes, PostgreSQL, Redis and this client share the machine's cores (no
pinning): that is the deployment being measured.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
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
from bench.wire import HandshakeFailed, WsSocket, text_frame
from rtc_server.scaleout.local_redis import RedisServer

P99_LIMIT_MS = 50.0
OPEN_CONCURRENCY = 50
START_TIMEOUT = 60.0


@dataclass
class Instance:
    process: subprocess.Popen[bytes]
    port: int
    http_port: int
    log: Path
    control: WsSocket | None = None


def lag_buckets(instances: list[Instance]) -> dict[float, float]:
    """The delivering instances' rtc_event_delivery_lag_seconds buckets, summed.

    Publish call to frames written on the instance holding the socket: the servers'
    share of the latency, without the load client's own delay in reading.
    """
    import urllib.request

    total: dict[float, float] = {}
    prefix = 'rtc_event_delivery_lag_seconds_bucket{le="'
    for instance in instances:
        url = f"http://127.0.0.1:{instance.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            for line in answer.read().decode().splitlines():
                if line.startswith(prefix):
                    bound, _, value = line[len(prefix) :].partition('"} ')
                    key = float("inf") if bound == "+Inf" else float(bound)
                    total[key] = total.get(key, 0.0) + float(value)
    return total


def bucket_percentile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The upper bound (ms) of the bucket holding the q-th percentile of the window."""
    counts = sorted((bound, after[bound] - before.get(bound, 0.0)) for bound in after)
    if not counts or counts[-1][1] <= 0:
        return float("nan")
    target = counts[-1][1] * q / 100
    for bound, cumulative in counts:
        if cumulative >= target:
            return bound * 1000
    return float("inf")


@dataclass
class Step:
    offered: int
    sent: int = 0
    answered: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    server_p99_ms: float = float("nan")  # bucket bound, from the servers' histogram
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds in the window


class Load:
    """Sockets of every user, the control sockets, and the open-loop sender."""

    def __init__(
        self,
        instances: list[Instance],
        tokens: list[str],
        cross: bool,
        cpu: Any,
    ) -> None:
        self.instances = instances
        self.cpu = cpu  # () -> {component: CPU seconds so far}
        self.tokens = tokens
        self.cross = cross
        self.home: list[int] = [i % len(instances) for i in range(len(tokens))]
        self.user_ids: list[int] = [0] * len(tokens)
        self.step: Step | None = None
        self._ids = 0

    async def open(self) -> list[WsSocket]:
        gate = asyncio.Semaphore(OPEN_CONCURRENCY)
        sockets: list[WsSocket | None] = [None] * len(self.tokens)

        async def one(index: int) -> None:
            async with gate:
                port = self.instances[self.home[index]].port
                sockets[index] = await _open(index, port, self.tokens[index], self._on_user)

        await asyncio.gather(*(one(i) for i in range(len(self.tokens))))
        for instance in self.instances:
            instance.control = await _open(-1, instance.port, None, self._on_control)
        return [s for s in sockets if s is not None]

    def _on_user(self, sock: WsSocket, payload: bytes, now: float) -> None:
        if b'"session.ready"' in payload:
            message = orjson.loads(payload)
            self.user_ids[sock.index] = message["params"]["userId"]
            if sock.waiter is not None and not sock.waiter.done():
                sock.waiter.set_result(None)
            return
        if self.step is not None and b'"bench.broadcast"' in payload:
            at = orjson.loads(payload)["params"]["data"]["at"]
            self.step.latencies.append(time.time() - at)

    def _on_control(self, sock: WsSocket, payload: bytes, now: float) -> None:
        if self.step is not None:
            self.step.answered += 1
            if b'"error"' in payload:
                self.step.errors += 1

    async def _snapshot(self) -> tuple[dict[str, float], dict[float, float]]:
        """CPU so far per component, and the servers' delivery-lag buckets."""
        cpu = self.cpu()
        return cpu, await asyncio.to_thread(lag_buckets, self.instances)

    async def run(self, rate: int, warmup: float, duration: float) -> Step:
        users = len(self.tokens)
        count = len(self.instances)
        step = Step(rate)
        loop = asyncio.get_running_loop()
        started = loop.time()
        measuring_from = started + warmup
        until = measuring_from + duration
        sent = 0
        snapshot: asyncio.Task[tuple[dict[str, float], dict[float, float]]] | None = None
        step_start = sent_at_start = 0.0
        while True:
            now = loop.time()
            if self.step is step and now >= until:
                break
            if now >= measuring_from and snapshot is None:
                # The servers' counters are read while the sender keeps its pace: a
                # sender that paused for the reading would catch up with a burst,
                # and the window would measure that burst rather than the rate.
                snapshot = asyncio.ensure_future(self._snapshot())
            if snapshot is not None and snapshot.done() and self.step is not step:
                cpu_start, lag_start = snapshot.result()
                self.step = step  # the window starts: latencies count from here
                step_start, sent_at_start = now, sent
                until = now + duration
            due = int((now - started) * rate)
            while sent < due:
                index = random.randrange(users)
                home = self.home[index]
                target = (home + random.randrange(1, count)) % count if self.cross else home
                self._ids += 1
                request = {
                    "jsonrpc": "2.0",
                    "id": self._ids,
                    "method": "bench.publishMany",
                    "params": {"userIds": [self.user_ids[index]]},
                }
                control = self.instances[target].control
                assert control is not None
                control.write(text_frame(orjson.dumps(request)))
                sent += 1
            await asyncio.sleep(0.001)
        step.sent = int(sent - sent_at_start)
        step.seconds = loop.time() - step_start
        # The events of the window still on their way: until they have all arrived
        # (or 0.5 s), then the window closes before the servers' counters are read.
        drain_until = loop.time() + 0.5
        while len(step.latencies) < step.sent and loop.time() < drain_until:
            await asyncio.sleep(0.005)
        self.step = None
        cpu_end, lag_end = await self._snapshot()
        step.cpu = {name: cpu_end[name] - cpu_start[name] for name in cpu_end}
        step.server_p99_ms = bucket_percentile(lag_start, lag_end, 99)
        return step


async def _open(index: int, port: int, token: str | None, on_text: Any) -> WsSocket:
    loop = asyncio.get_running_loop()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for attempt in range(3):
        sock = WsSocket(index, "127.0.0.1", port, "/ws", headers, on_text)
        sock.waiter = loop.create_future() if token else None
        try:
            async with asyncio.timeout(30):
                await loop.create_connection(
                    functools.partial(lambda s: s, sock), "127.0.0.1", port
                )
                await sock.opened
                if sock.waiter is not None:
                    await sock.waiter
            return sock
        except (OSError, HandshakeFailed, TimeoutError):
            sock.abort()
            await asyncio.sleep(0.2 * (attempt + 1))
    raise RuntimeError(f"socket {index} did not open on port {port}")


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.jwt_secret = secrets.token_hex(32)
        self.children: list[subprocess.Popen[bytes]] = []
        self.redis = RedisServer()
        self.dsn = ""
        self.tokens: list[str] = []

    def prepare(self) -> None:
        say("starting the embedded PostgreSQL and a local Redis")
        self.postgres = seed.start_postgres(self.workdir / "pg", set(os.sched_getaffinity(0)))
        self.dsn = self.postgres.dsn
        self.redis.start()
        say(f"creating {self.args.users:,} users with a login session each")
        self.tokens = asyncio.run(
            seed.create_users(self.dsn, self.args.users, self.jwt_secret.encode())
        )

    def start_instances(self, count: int, redis: bool) -> list[Instance]:
        asyncio.run(seed.forget_events(self.dsn))
        instances = []
        for n in range(count):
            port, http_port = free_port(), free_port()
            log = self.workdir / f"server-{count}-{n}.log"
            env = {
                **os.environ,
                **server_env(
                    port=port,
                    http_port=http_port,
                    data_dir=self.workdir / "data",
                    dsn=self.dsn,
                    jwt_secret=self.jwt_secret,
                    rate=1_000_000,
                ),
                "RTC_SERVER__MAX_INFLIGHT": "64",
                "RTC_REDIS__URL": self.redis.url if redis else "",
                "RTC_REDIS__PREFIX": f"b{count}:",
            }
            with open(log, "wb") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "bench.server"],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self.children.append(process)
            instances.append(Instance(process, port, http_port, log))
        for instance in instances:
            self._wait_listening(instance)
        return instances

    def _wait_listening(self, instance: Instance) -> None:
        import socket

        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if instance.process.poll() is not None:
                raise RuntimeError("server exited:\n" + tail(instance.log))
            try:
                with socket.create_connection(("127.0.0.1", instance.port), 1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("server did not listen:\n" + tail(instance.log))

    def stop_instances(self, instances: list[Instance]) -> None:
        for instance in instances:
            if instance.process.poll() is None:
                instance.process.send_signal(signal.SIGTERM)
        for instance in instances:
            try:
                instance.process.wait(20)
            except subprocess.TimeoutExpired:
                instance.process.kill()

    def measure(self, label: str, count: int) -> list[dict[str, Any]]:
        say(f"{label}: {count} instance(s), {len(self.tokens):,} sockets")
        instances = self.start_instances(count, redis=count > 1)
        try:
            return uvloop.run(self._measure(label, instances, cross=count > 1))
        finally:
            self.stop_instances(instances)

    async def _measure(
        self, label: str, instances: list[Instance], cross: bool
    ) -> list[dict[str, Any]]:
        postmaster = postmaster_pid(self.postgres.pgdata)
        redis_pid = self.redis.pid

        def cpu() -> dict[str, float]:
            servers = sum(cpu_seconds(i.process.pid) for i in instances)
            return {
                "servers": servers,
                "postgres": sum(postgres_cpu(postmaster).values()),
                "redis": cpu_seconds(redis_pid) if redis_pid else 0.0,
                "client": own_cpu_seconds(),
            }

        load = Load(instances, self.tokens, cross, cpu)
        await load.open()
        await asyncio.sleep(self.args.settle)  # handshakes' garbage, sessions settled
        rows = []
        for rate in self.args.rates:
            step = await load.run(rate, self.args.warmup, self.args.duration)
            latencies = sorted(step.latencies)
            delivered = len(latencies) / step.seconds if step.seconds else 0.0
            row = {
                "setup": label,
                "offered": rate,
                "delivered_per_s": delivered,
                "p50_ms": percentile(latencies, 50) * 1000,
                "p99_ms": percentile(latencies, 99) * 1000,
                "max_ms": (latencies[-1] * 1000) if latencies else float("nan"),
                "server_p99_le_ms": step.server_p99_ms,
                "errors": step.errors,
                # CPU per delivered event, by component, in µs.
                "cpu_us": {
                    name: seconds / max(1, len(latencies)) * 1e6
                    for name, seconds in step.cpu.items()
                },
                "lost": max(0, step.sent - len(latencies)),
            }
            rows.append(row)
            say(
                f"  {rate:>6}/s offered: {delivered:8.0f}/s delivered, "
                f"p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms"
            )
            if row["p99_ms"] > P99_LIMIT_MS or delivered < 0.9 * rate:
                break
        return rows

    def close(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()
        self.redis.close()
        if getattr(self, "postgres", None) is not None:
            self.postgres.stop()


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| set-up | offered events/s | delivered events/s | p50 ms | p99 ms | max ms "
        "| servers' p99 ≤ ms | CPU µs/event: servers / PostgreSQL / Redis / client |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cpu = r["cpu_us"]
        lines.append(
            f"| {r['setup']} | {r['offered']:,} | {r['delivered_per_s']:,.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.1f} | "
            f"{r['server_p99_le_ms']:g} | "
            f"{cpu['servers']:.0f} / {cpu['postgres']:.0f} / {cpu['redis']:.0f} / "
            f"{cpu['client']:.0f} |"
        )
    best: dict[str, int] = {}
    for r in rows:
        if r["p99_ms"] <= P99_LIMIT_MS and r["delivered_per_s"] >= 0.9 * r["offered"]:
            best[r["setup"]] = max(best.get(r["setup"], 0), r["offered"])
    lines.append("")
    for setup, rate in best.items():
        lines.append(
            f"- {setup}: the most offered rate with p99 ≤ {P99_LIMIT_MS:.0f} ms: {rate:,}/s"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument(
        "--rates",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[250, 500, 1000, 2000, 3000, 4000, 6000],
    )
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument(
        "--setups", type=lambda text: text.split(","), default=["single", "cluster"]
    )
    parser.add_argument("--duration", type=float, default=5.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    started = datetime.now()
    workdir = Path(tempfile.mkdtemp(prefix="rtc-bench-cluster-"))
    bench = Bench(args, workdir)

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        bench.prepare()
        rows = []
        if "single" in args.setups:
            rows += bench.measure("single instance", 1)
        if "cluster" in args.setups:
            rows += bench.measure(f"{args.instances} instances (cross)", args.instances)
    finally:
        bench.close()
        shutil.rmtree(workdir, ignore_errors=True)
    text = table(rows)
    print(text)
    save_results(
        started,
        "-cluster",
        {"environment": environment(), "args": vars(args), "rows": rows, "table": text},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
