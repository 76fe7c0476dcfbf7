"""The benchmark runner: ``python -m bench [--quick] [options]``.

It starts an embedded PostgreSQL (pinned to core 0 with the servers) in a temporary
folder and fills it with users and sessions; then, for each figure and each server
(ours: :mod:`bench.server`; the bare ceiling: :mod:`bench.bare_server`), it starts a
fresh server pinned to core 0 and one load client (:mod:`bench.load`) pinned to
core 1, and stops both. It prints one table per figure and writes every number to
``bench/results/<timestamp>.json``. Everything it started is stopped on exit, on
errors and on Ctrl-C; the temporary folder is removed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson

from bench import report, seed
from bench.load import BROWSER_HEADERS
from bench.procfs import postmaster_pid, raise_fd_limit
from storage.embedded import EmbeddedPostgres

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SERVER_CPU, CLIENT_CPU = "0", "1"
WARMUP_SOCKETS = 100  # opened and closed before the "before" RSS of figure 1
RATE = 1_000_000  # per-socket rate limit of our server during the benchmark
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
LOAD_TIMEOUT = 960.0  # the load client bounds itself at 900 s


@dataclass(frozen=True)
class Plan:
    idle: tuple[int, ...]
    fanout: int
    rounds: int
    ping: tuple[int, ...]
    warmup: float
    duration: float
    windows: int
    repeats: int
    settle: float
    concurrency: int
    servers: tuple[str, ...]
    profile: bool = False
    browser_headers: bool = False
    postgres_cpu: str = "0"  # default: with the servers, all server-side work on one core

    @property
    def users(self) -> int:
        return max((*self.idle, self.fanout, *self.ping), default=0)


def _counts(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def parse_args(argv: list[str] | None) -> tuple[Plan, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick", action="store_true", help="a short smoke run (small counts, 2 s windows)"
    )
    p.add_argument("--idle-sockets", type=_counts, help="figure 1 counts (default 5000,10000)")
    p.add_argument("--fanout-sockets", type=int, help="figure 3 recipients (default 5000)")
    p.add_argument("--rounds", type=int, help="figure 3 measured rounds (default 5)")
    p.add_argument("--ping-sockets", type=_counts, help="figure 2 counts (default 100,500)")
    p.add_argument("--duration", type=float, help="figure 2 window, seconds (default 10)")
    p.add_argument(
        "--windows", type=int, help="figure 2 windows per count and server process (default 2)"
    )
    p.add_argument(
        "--repeats", type=int, help="figure 2 server processes per server, alternated (default 3)"
    )
    p.add_argument("--warmup", type=float, help="figure 2 warm-up, seconds (default 2)")
    p.add_argument("--settle", type=float, help="pause before reading RSS, seconds (default 2)")
    p.add_argument(
        "--concurrency", type=int, default=50, help="handshakes in progress at once (default 50)"
    )
    p.add_argument(
        "--browser-headers",
        action="store_true",
        help="send the handshake headers of a browser (User-Agent, Origin ...), "
        "not just the required ones: the servers keep them per socket",
    )
    p.add_argument(
        "--postgres-cpu",
        default="0",
        help="core of the embedded PostgreSQL (default 0, the servers' core; 1 puts it "
        "with the load client, so its work can overlap the server's)",
    )
    p.add_argument("--servers", default="ours,bare", help="which servers (default ours,bare)")
    p.add_argument("--figures", default="1,2,3", help="which figures (default 1,2,3)")
    p.add_argument(
        "--profile",
        action="store_true",
        help="record each server with py-spy (collapsed stacks in bench/results/);"
        " the sampling costs the server time: figures of such a run are not the"
        " reference",
    )
    args = p.parse_args(argv)
    quick = args.quick
    figures = set(_counts(args.figures))
    plan = Plan(
        idle=(args.idle_sockets or ((500, 1000) if quick else (5000, 10000)))
        if 1 in figures
        else (),
        fanout=(args.fanout_sockets or (500 if quick else 5000)) if 3 in figures else 0,
        rounds=args.rounds or (2 if quick else 5),
        ping=(args.ping_sockets or ((20, 100) if quick else (100, 500))) if 2 in figures else (),
        warmup=args.warmup if args.warmup is not None else (1.0 if quick else 2.0),
        duration=args.duration or (2.0 if quick else 10.0),
        windows=args.windows or (1 if quick else 2),
        repeats=args.repeats or (1 if quick else 3),
        settle=args.settle if args.settle is not None else (0.5 if quick else 2.0),
        concurrency=args.concurrency,
        servers=tuple(s for s in args.servers.split(",") if s),
        profile=args.profile,
        browser_headers=args.browser_headers,
        postgres_cpu=args.postgres_cpu,
    )
    unknown = set(plan.servers) - {report.OURS, report.BARE}
    if unknown or not plan.servers:
        p.error(f"--servers: ours and/or bare, not {sorted(unknown)}")
    return plan, args


def server_env(
    *, port: int, http_port: int, data_dir: Path, dsn: str, jwt_secret: str, rate: int
) -> dict[str, str]:
    """What every benchmark sets for our server (``bench.server`` or ``rtc-server
    serve``): loopback ports, its data folder and database, warnings only, a known
    access-token key, and the per-socket rate limit lifted to ``rate`` a second."""
    return {
        "RTC_SERVER__HOST": "127.0.0.1",
        "RTC_SERVER__PORT": str(port),
        "RTC_HTTP__HOST": "127.0.0.1",
        "RTC_HTTP__PORT": str(http_port),
        "RTC_DATA_DIR": str(data_dir),
        "RTC_DATABASE__DSN": dsn,
        "RTC_LOG__LEVEL": "WARNING",
        "RTC_AUTH__JWT_SECRET": jwt_secret,
        "RTC_SERVER__RATE_PER_SECOND": str(rate),
        "RTC_SERVER__RATE_BURST": str(rate),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    kind: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path


class Runner:
    def __init__(self, plan: Plan, workdir: Path) -> None:
        self.plan = plan
        self.workdir = workdir
        self.jwt_secret = secrets.token_hex(32)
        self.children: list[subprocess.Popen[bytes]] = []
        self.postgres: EmbeddedPostgres | None = None
        self.dsn = ""
        self.tokens: list[str] = []
        self._steps = 0
        self.stamp = f"{datetime.now():%Y%m%d-%H%M%S}"

    # -- set-up --

    def start_postgres(self, core: int) -> None:
        """The embedded PostgreSQL in this run's folder, pinned to ``core``."""
        say(f"starting the embedded PostgreSQL (pinned to core {core})")
        self.postgres = seed.start_postgres(self.workdir / "pg", {core})
        self.dsn = self.postgres.dsn

    def prepare(self) -> None:
        self.start_postgres(int(self.plan.postgres_cpu))
        count = self.plan.users + WARMUP_SOCKETS + 1
        say(f"creating {count:,} users with a login session each, minting their tokens")
        self.tokens = asyncio.run(seed.create_users(self.dsn, count, self.jwt_secret.encode()))

    def token_sets(self, kind: str, sockets: int) -> dict[str, Any]:
        if kind == report.BARE:
            return {"sockets": [None] * sockets, "warmup": [None] * WARMUP_SOCKETS, "control": None}
        return {
            "sockets": self.tokens[:sockets],
            "warmup": self.tokens[-WARMUP_SOCKETS - 1 : -1],
            "control": self.tokens[-1],
        }

    # -- processes --

    def start_server(self, kind: str) -> ServerProcess:
        port = free_port()
        log = self.workdir / f"server-{self._steps}-{kind}.log"
        env = dict(os.environ)
        if kind == report.OURS:
            asyncio.run(seed.forget_events(self.dsn))
            env.update(self.our_settings(port))
            module = ["-m", "bench.server"]
        else:
            module = ["-m", "bench.bare_server", "--port", str(port)]
        command = ["taskset", "-c", SERVER_CPU, sys.executable, *module]
        with open(log, "wb") as out:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.children.append(process)
        server = ServerProcess(kind, process, port, log)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{kind} server exited with {process.returncode}:\n" + tail(log))
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return server
            time.sleep(0.1)
        raise RuntimeError(
            f"{kind} server did not listen within {START_TIMEOUT:.0f} s:\n" + tail(log)
        )

    def our_settings(self, port: int) -> dict[str, str]:
        return {
            **server_env(
                port=port,
                http_port=free_port(),
                data_dir=self.workdir / "data",
                dsn=self.dsn,
                jwt_secret=self.jwt_secret,
                rate=RATE,
            ),
            # The browser's Origin of --browser-headers (else refused with 403).
            "RTC_SERVER__ALLOWED_ORIGINS": orjson.dumps([BROWSER_HEADERS["Origin"]]).decode(),
        }

    def stop(self, process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        if process in self.children:
            self.children.remove(process)

    def _postmaster(self) -> int | None:
        if self.postgres is None:
            return None
        return postmaster_pid(self.postgres.pgdata)

    def client_spec(self, server: ServerProcess) -> dict[str, Any]:
        """What every load client needs: where the server listens, and which processes
        and core to read CPU from."""
        return {
            "host": "127.0.0.1",
            "port": server.port,
            "path": "/ws",
            "pid": server.process.pid,
            "server_cpu": int(SERVER_CPU),
            "postmaster": self._postmaster(),
        }

    def load(self, server: ServerProcess, spec: dict[str, Any]) -> dict[str, Any]:
        self._steps += 1
        spec = {
            **self.client_spec(server),
            "concurrency": self.plan.concurrency,
            "browser_headers": self.plan.browser_headers,
            **spec,
        }
        return self._run_client(
            server, ["bench.load"], spec, f"load-{self._steps}", f"{spec['phase']}, {server.kind}"
        )

    def _run_client(
        self, server: ServerProcess, module: list[str], spec: dict[str, Any], name: str, what: str
    ) -> dict[str, Any]:
        """``python -m <module...> SPEC OUT`` on the client core; its result.

        Fails (RuntimeError, with the client's and the server's logs) if the client
        fails or times out, or the server died meanwhile.
        """
        spec_path = self.workdir / f"{name}.json"
        out_path = self.workdir / f"{name}.out.json"
        log = self.workdir / f"{name}.log"
        spec_path.write_bytes(orjson.dumps(spec))
        command = ["taskset", "-c", CLIENT_CPU, sys.executable, "-m", *module]
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [*command, str(spec_path), str(out_path)],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.children.append(process)
        try:
            code = process.wait(LOAD_TIMEOUT)
        except subprocess.TimeoutExpired:
            code = None
        self.stop(process)
        if code != 0:
            raise RuntimeError(
                f"load client ({what}) failed ({code}):\n{tail(log)}\n"
                f"--- {server.kind} server log:\n{tail(server.log)}"
            )
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.kind} server died:\n{tail(server.log)}")
        result: dict[str, Any] = orjson.loads(out_path.read_bytes())
        return result

    @contextlib.contextmanager
    def server(self, kind: str, what: str) -> Iterator[ServerProcess]:
        process = self.start_server(kind)
        profiler = self.start_profiler(process, what) if self.plan.profile else None
        try:
            yield process
        finally:
            if profiler is not None:
                self.stop(profiler, signal.SIGINT)  # py-spy writes its output on SIGINT
            self.stop(process.process)

    def start_profiler(self, server: ServerProcess, what: str) -> subprocess.Popen[bytes]:
        py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"profile-{self.stamp}-{server.kind}-{what}.txt"
        command = [
            "taskset",
            "-c",
            CLIENT_CPU,
            py_spy,
            "record",
            "--pid",
            str(server.process.pid),
            "--rate",
            "250",
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(out),
        ]
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        self.children.append(process)
        time.sleep(0.5)
        return process

    def run_load(self, server: ServerProcess, module: str, spec: dict[str, Any]) -> dict[str, Any]:
        """``python -m <module> --load`` with ``spec`` (the scenario benchmarks,
        :mod:`bench.scenario`); its result."""
        name = module.rsplit(".", 1)[-1]
        return self._run_client(server, [module, "--load"], spec, f"{name}-load", name)

    def close(self) -> None:
        for process in list(self.children):
            with contextlib.suppress(Exception):
                self.stop(process)
        for process in list(self.children):  # could not even be signalled politely
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        if self.postgres is not None:
            say("stopping PostgreSQL")
            with contextlib.suppress(Exception):
                self.postgres.stop()
            self.postgres = None

    # -- figures --

    def run(self) -> dict[str, Any]:
        plan = self.plan
        results: dict[str, Any] = {"idle": {}, "ping": {}, "fanout": {}}
        idle_counts = list(plan.idle)
        if plan.fanout and plan.fanout not in idle_counts:
            idle_counts.append(plan.fanout)
        for count in idle_counts:
            fanout = count == plan.fanout
            for kind in plan.servers:
                what = f"{count:,} idle sockets" + (" + fan-out" if fanout else "")
                say(f"{kind}: {what}")
                with self.server(kind, f"idle{count}") as server:
                    spec: dict[str, Any] = {
                        "phase": "idle",
                        "sockets": count,
                        "settle": plan.settle,
                        "tokens": self.token_sets(kind, count),
                        "fanout_rounds": plan.rounds if fanout else 0,
                        "fanout_warmup": 1,
                    }
                    result = self.load(server, spec)
                if count in plan.idle:
                    results["idle"].setdefault(kind, {})[count] = result
                if fanout:
                    results["fanout"][kind] = result.pop("fanout")
                say(
                    f"  {result['kib_per_socket']:.2f} KiB per socket"
                    + (
                        f", fan-out to last socket {results['fanout'][kind]['last_ms_median']:.1f}"
                        " ms (median)"
                        if fanout
                        else ""
                    )
                )
        if plan.ping:
            processes: dict[str, list[dict[str, Any]]] = {}
            # Server processes differ from one another by more than windows of one
            # process do: alternate fresh processes of each server, pool the windows.
            for repeat in range(plan.repeats):
                for kind in plan.servers:
                    say(
                        f"{kind}: system.ping on {', '.join(map(str, plan.ping))} sockets"
                        f" (server process {repeat + 1} of {plan.repeats})"
                    )
                    with self.server(kind, f"ping{repeat + 1}") as server:
                        measured = self.load(
                            server,
                            {
                                "phase": "ping",
                                "counts": list(plan.ping),
                                "warmup": plan.warmup,
                                "duration": plan.duration,
                                "windows": plan.windows,
                                "tokens": self.token_sets(kind, max(plan.ping)),
                            },
                        )
                    processes.setdefault(kind, []).append(measured)
                    for run in measured["runs"]:
                        say(
                            f"  {run['sockets']} sockets: {run['requests_per_second']:,.0f}"
                            f" req/s, {run['server_cpu_us_per_request']:.1f} us CPU per request"
                        )
            results["ping"] = {kind: merge_ping(runs) for kind, runs in processes.items()}
        return results


def merge_ping(processes: list[dict[str, Any]]) -> dict[str, Any]:
    """Every figure of one count: the median over the windows of every server process."""
    by_count: dict[int, list[dict[str, Any]]] = {}
    for measured in processes:
        for run in measured["runs"]:
            by_count.setdefault(run["sockets"], []).append(run)
    runs = []
    for count, per_process in sorted(by_count.items()):
        windows = [w for run in per_process for w in run["windows"]]
        summary: dict[str, Any] = {
            key: statistics.median(w[key] for w in windows)
            for key in windows[0]
            if key not in ("seconds", "answered", "errors")
        }
        cpu = [w["server_cpu_us_per_request"] for w in windows]
        summary.update(
            sockets=count,
            window_seconds=per_process[0]["window_seconds"],
            windows=len(windows),
            processes=len(per_process),
            server_cpu_us_per_request_range=[min(cpu), max(cpu)],
            answered=sum(w["answered"] for w in windows),
            errors=sum(w["errors"] for w in windows),
            per_process=per_process,
        )
        runs.append(summary)
    return {"runs": runs}


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no {path.name})"
    return "\n".join(text.splitlines()[-lines:])


def say(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def busy_cpus(seconds: float = 1.0) -> float:
    """How many CPUs other processes keep busy right now (from /proc/stat)."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields[:8]) - idle, sum(fields[:8])

    busy0, total0 = sample()
    time.sleep(seconds)
    busy1, total1 = sample()
    cpus = os.cpu_count() or 1
    return (busy1 - busy0) / max(1, total1 - total0) * cpus


def environment() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, check=False, capture_output=True, text=True
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    if git("status", "--porcelain", "--untracked-files=no", "--", "rtc_server", "api", "storage"):
        commit += " (with uncommitted changes to the server)"
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "commit": commit,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "packages": {
            name: version(name)
            for name in ("websockets", "uvloop", "orjson", "asyncpg", "pydantic", "pgserver")
        },
    }


def tables(plan: Plan, results: dict[str, Any]) -> str:
    out = []
    if results["idle"]:
        out.append(report.idle_table(results["idle"], plan.browser_headers))
    if results["ping"]:
        out.append(
            report.ping_table(
                results["ping"],
                f"Our server runs with RTC_SERVER__RATE_PER_SECOND={RATE} and "
                f"RTC_SERVER__RATE_BURST={RATE}\n  (the default per-socket limit, 20/s, "
                "would throttle the loop).",
            )
        )
    if results["fanout"]:
        out.append(report.fanout_table(results["fanout"], plan.postgres_cpu))
    return "\n\n".join(out)


def save_results(started: datetime, suffix: str, body: dict[str, Any]) -> Path:
    """Write one run's figures to bench/results/<timestamp><suffix>.json."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{started:%Y%m%d-%H%M%S}{suffix}.json"
    document = {
        "started": started.isoformat(timespec="seconds"),
        "seconds": round((datetime.now() - started).total_seconds(), 1),
        "our_settings": {"RTC_SERVER__RATE_PER_SECOND": RATE, "RTC_SERVER__RATE_BURST": RATE},
        **body,
    }
    out.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    say(f"results written to {out.relative_to(ROOT)}")
    return out


def main(argv: list[str] | None = None) -> int:
    plan, _ = parse_args(argv)
    raise_fd_limit()

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    started = datetime.now()
    # Not under pytest-style private temp dirs: pgserver, as root, runs PostgreSQL as
    # the user "pgserver", which must traverse every parent of its data directory.
    workdir = Path(tempfile.mkdtemp(prefix="rtc-bench-"))
    runner = Runner(plan, workdir)
    busy = busy_cpus()
    if busy > 0.1:
        say(f"warning: other processes keep {busy:.2f} CPUs busy; the figures will be noisy")
    try:
        runner.prepare()
        os.sched_setaffinity(0, {int(CLIENT_CPU)})  # the runner waits on core 1
        results = runner.run()
    except KeyboardInterrupt:
        say("interrupted: stopping everything")
        return 130
    except RuntimeError as exc:
        say(f"failed: {exc}")
        return 1
    finally:
        runner.close()
        shutil.rmtree(workdir, ignore_errors=True)
    text = tables(plan, results)
    print(text)
    save_results(
        started,
        "",
        {
            "plan": asdict(plan),
            "environment": {**environment(), "busy_cpus_before": busy},
            "results": results,
            "tables": text,
        },
    )
    return 0
