"""Uploads through one instance: ``python -m bench.uploads [--count 400] [--concurrency 20]
[--sizes 1] [--duration 0]``.

One ``rtc-server`` process on an embedded PostgreSQL. ``--concurrency`` customers (bulk
SQL, a login session and token each) open their sockets; each then uploads in a loop,
all at once: ``uploads.create`` on its socket, then one HTTP ``PUT`` of the file to the
URL it got, answered once the image is decoded, re-encoded, thumbnailed and stored.
The files are real JPEGs of random pixels (noise compresses as badly as a photo gets)
of about ``--sizes`` MB each, a few distinct ones reused. A size runs until ``--count``
uploads are done (or ``--duration`` seconds passed), after a warm-up of one upload per
customer.

Measured: uploads/s and MB/s received, the latency of an upload (create + PUT) and of
the PUT alone (p50/p99/max, client clock), the server's CPU per upload, and its RSS
sampled every 20 ms: at the start of the size's run, its peak, and at the end. The
body is streamed to a scratch file and never held whole, so the peak follows the
decoding of ``uploads.workers`` images at a time, not the size of the files or how
many arrive at once. Writes ``bench/results/<timestamp>-uploads.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from bench import report
from bench.load import percentile
from bench.procfs import cpu_seconds, rss_kib
from bench.run import ROOT, environment, free_port, save_results, say, server_env, tail
from bench.seed import create_users
from rtc_server.client import RtcClient
from storage.embedded import EmbeddedPostgres
from tests.pictures import noise_jpeg

START_TIMEOUT = 60.0
DISTINCT_IMAGES = 6
RSS_EVERY = 0.02  # seconds between RSS samples
MB = 1_000_000


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.jwt_secret = secrets.token_hex(32)
        self.postgres: EmbeddedPostgres | None = None
        self.server: subprocess.Popen[bytes] | None = None

    def start_server(self) -> tuple[int, int]:
        assert self.postgres is not None
        port, http_port = free_port(), free_port()
        env = dict(os.environ)
        env.update(
            {
                **server_env(
                    port=port,
                    http_port=http_port,
                    data_dir=self.workdir / "data",
                    dsn=self.postgres.dsn,
                    jwt_secret=self.jwt_secret,
                    rate=100_000,
                ),
                # The per-user rate and quota would stop a benchmark's few users.
                "RTC_UPLOADS__PER_HOUR": "10000",
                "RTC_UPLOADS__QUOTA_BYTES": str(1 << 40),
                "RTC_REMINDERS__ENABLED": "false",
                "RTC_CONSOLE__ENABLED": "false",  # not measured
            }
        )
        log = self.workdir / "server.log"
        with open(log, "wb") as out:
            self.server = subprocess.Popen(
                [sys.executable, "-m", "rtc_server.cli", "serve"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise RuntimeError("server exited:\n" + tail(log))
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/readyz", timeout=1).status_code == 200:
                    return port, http_port
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server not ready:\n" + tail(log))

    def close(self) -> None:
        if self.server is not None:
            with contextlib.suppress(ProcessLookupError):
                self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.server.pid, signal.SIGKILL)
        if self.postgres is not None:
            self.postgres.stop()

    async def run(self) -> dict[str, Any]:
        say("starting the embedded PostgreSQL")
        self.postgres = EmbeddedPostgres.start(self.workdir / "pg")
        tokens = await create_users(
            self.postgres.dsn, self.args.concurrency, self.jwt_secret.encode()
        )
        port, _ = self.start_server()
        assert self.server is not None
        clients = [
            await RtcClient.connect(f"ws://127.0.0.1:{port}/ws", access_token=token)
            for token in tokens
        ]
        try:
            timeout = aiohttp.ClientTimeout(total=120)
            connector = aiohttp.TCPConnector(limit=2 * self.args.concurrency)
            async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
                runs = []
                for size in self.args.sizes:
                    runs.append(await self._size(http, clients, size))
                return {"concurrency": self.args.concurrency, "runs": runs}
        finally:
            await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)

    async def _size(
        self, http: aiohttp.ClientSession, clients: list[RtcClient], size_mb: float
    ) -> dict[str, Any]:
        assert self.server is not None
        pid = self.server.pid
        say(f"making {DISTINCT_IMAGES} noise JPEGs of about {size_mb:g} MB")
        files = [noise_jpeg(int(size_mb * MB), seed=n) for n in range(DISTINCT_IMAGES)]
        sent = 0

        async def one(client: RtcClient, n: int) -> tuple[float, float]:
            nonlocal sent
            data = files[n % len(files)]
            t0 = time.perf_counter()
            ticket = await client.call(
                "uploads.create",
                {
                    "idempotencyKey": secrets.token_hex(12),
                    "purpose": "profilePicture",
                    "contentType": "image/jpeg",
                    "bytes": len(data),
                },
                timeout=60,
            )
            t1 = time.perf_counter()
            async with http.put(ticket["url"], data=io.BytesIO(data)) as answer:
                body = await answer.read()
                if answer.status != 201:
                    raise RuntimeError(f"upload refused: {answer.status} {body[:200]!r}")
            t2 = time.perf_counter()
            sent += len(data)
            return t2 - t0, t2 - t1

        say(f"warm-up: one upload per customer ({len(clients)})")
        await asyncio.gather(*(one(c, n) for n, c in enumerate(clients)))
        sent = 0
        await asyncio.sleep(1.0)

        samples: list[int] = []

        async def sample() -> None:
            while True:
                samples.append(rss_kib(pid))
                await asyncio.sleep(RSS_EVERY)

        count, duration = self.args.count, self.args.duration
        latencies: list[float] = []
        puts: list[float] = []
        next_n = 0

        async def worker(client: RtcClient) -> None:
            nonlocal next_n
            while True:
                if duration:
                    if time.perf_counter() - started >= duration:
                        return
                elif next_n >= count:
                    return
                n = next_n
                next_n += 1
                whole, put = await one(client, n)
                latencies.append(whole * 1000)
                puts.append(put * 1000)

        rss_start = rss_kib(pid)
        sampler = asyncio.create_task(sample())
        cpu_before = cpu_seconds(pid)
        say(
            f"{size_mb:g} MB files: {len(clients)} uploading at once, "
            + (f"for {duration:g} s" if duration else f"{count} uploads")
        )
        started = time.perf_counter()
        try:
            await asyncio.gather(*(worker(c) for c in clients))
            seconds = time.perf_counter() - started
        finally:
            sampler.cancel()
        cpu = cpu_seconds(pid) - cpu_before
        await asyncio.sleep(1.0)  # what stays once the last request is answered
        rss_end = rss_kib(pid)
        latencies.sort()
        puts.sort()
        done = len(latencies)
        return {
            "size_mb": size_mb,
            "file_bytes": [len(f) for f in files],
            "uploads": done,
            "seconds": seconds,
            "uploads_per_second": done / seconds,
            "mb_per_second": sent / MB / seconds,
            "latency_ms": _latency(latencies),
            "put_ms": _latency(puts),
            "server_cpu_seconds": cpu,
            "server_cpu_ms_per_upload": cpu * 1000 / max(done, 1),
            "rss_kib": {
                "start": rss_start,
                "peak": max(samples, default=rss_start),
                "end": rss_end,
            },
        }


def _latency(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": values[-1] if values else 0.0,
    }


def table(result: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str]] = []
    for r in result["runs"]:
        average = sum(r["file_bytes"]) / len(r["file_bytes"]) / MB
        rss = r["rss_kib"]
        label = f"[{r['size_mb']:g} MB]"
        rows += [
            (
                f"{label} uploads",
                f"{r['uploads']:,}",
                f"{result['concurrency']} at once, files of {average:.2f} MB (noise JPEG),"
                f" in {r['seconds']:.1f} s",
            ),
            (f"{label} throughput, uploads/s", f"{r['uploads_per_second']:.1f}", ""),
            (f"{label} throughput, MB/s", f"{r['mb_per_second']:.1f}", "received"),
            (
                f"{label} upload p50 / p99, ms",
                f"{r['latency_ms']['p50']:.0f}",
                f"{r['latency_ms']['p99']:.0f}; max {r['latency_ms']['max']:.0f}"
                " (uploads.create + PUT)",
            ),
            (
                f"{label} PUT p50 / p99, ms",
                f"{r['put_ms']['p50']:.0f}",
                f"{r['put_ms']['p99']:.0f}; max {r['put_ms']['max']:.0f}",
            ),
            (
                f"{label} server CPU per upload, ms",
                f"{r['server_cpu_ms_per_upload']:.0f}",
                "all its threads (decoding, encoding, hashing)",
            ),
            (
                f"{label} server RSS start / peak / end, MiB",
                f"{rss['start'] / 1024:.0f}",
                f"{rss['peak'] / 1024:.0f} / {rss['end'] / 1024:.0f}",
            ),
        ]
    title = "Uploads through one instance (decode, strip, re-encode, thumbnail, store)"
    return "\n".join([title, *report.metric_rows(rows, "value")])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=400, help="uploads per size")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds per size instead")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument(
        "--sizes",
        type=lambda text: [float(x) for x in text.split(",")],
        default=[1.0],
        help="file sizes in MB, comma-separated (e.g. 1,4)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now()
    with tempfile.TemporaryDirectory(prefix="rtc-bench-uploads-") as workdir:
        bench = Bench(args, Path(workdir))
        try:
            result = asyncio.run(bench.run())
        finally:
            bench.close()
    print(table(result))
    path = save_results(started, "-uploads", {"environment": environment(), "result": result})
    say(f"results in {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
