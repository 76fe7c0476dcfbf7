"""Benchmark of recorded calls: ``python -m bench.recordings [--quick] [--calls 10,20,40,60]``.

For each number of concurrent calls, three processes:

- the runner (this module, core 1, mostly waiting) starts the two below and prints
  the table;
- the server (``--serve``, uvloop, core 0): one :class:`recordings.media.RecordedCall`
  per call, driven over a Unix socket (one JSON line per request: answer an offer,
  close a call);
- the parties (``--parties``, uvloop, core 1): two aiortc peer connections per call.
  Each sends a PRE-ENCODED Opus tone (440 / 660 Hz, encoded once and replayed, paced
  at 20 ms) and counts what it receives without decoding it (the same hook as the
  server), so the parties stay cheap.

All calls connect first; then every party starts sending at once for ``--duration``
seconds. The server's CPU time (``/proc``, all its threads) is read over the window
from ``--warmup`` seconds after the start to one second before the end; its RSS at the
end of that window. Then each call is closed and its legs' results compared with what
the parties sent: *completeness* is a leg's recorded duration over the duration sent
(the minimum over all legs is shown), *lost* counts packets that never reached the
server, *forwarded* those the server sent on, *heard* those the parties received.

A level is *clean* when no packet was lost on the way in or on the way out, no
forwarding queue overflowed, and every recording is complete (>= 99.5 %).
Writes ``bench/results/<timestamp>-recordings.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import uvloop
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from bench.procfs import cpu_seconds, raise_fd_limit, rss_kib
from recordings.aiortc_hook import bypass_decoding
from recordings.media import LEGS, Leg, RecordedCall

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SERVER_CPU, PARTIES_CPU = "0", "1"
TONES: dict[Leg, float] = {"caller": 440.0, "callee": 660.0}
SETUP_CONCURRENCY = 8  # offers being answered at once


# The server process --------------------------------------------------------------


async def serve(socket_path: Path, folder: Path) -> None:
    calls: dict[int, RecordedCall] = {}

    async def handle(request: dict[str, Any]) -> dict[str, Any]:
        call_id = int(request["call"])
        if request["op"] == "answer":
            call = calls.get(call_id)
            if call is None:
                call = calls[call_id] = RecordedCall(
                    call_id, leg_path=lambda leg: folder / f"{call_id}-{leg}.ogg"
                )
            return {"sdp": await call.answer(request["leg"], request["sdp"])}
        if request["op"] == "close":
            call = calls.pop(call_id)
            forwarded, dropped = call.forwarded(), call.dropped()
            results = await call.close()
            return {
                leg: {
                    "packets": result.packets,
                    "lost": result.lost,
                    "duration_ms": result.duration_ms,
                    "bytes": result.bytes,
                    "error": result.error,
                    "forwarded_to": forwarded[leg],
                    "dropped_to": dropped[leg],
                }
                for leg, result in results.items()
            }
        raise ValueError(f"unknown op {request['op']!r}")

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(orjson.dumps(await handle(orjson.loads(line))) + b"\n")
        writer.close()

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    server = await asyncio.start_unix_server(connection, str(socket_path), limit=2**20)
    print("ready", os.getpid(), flush=True)
    await stop.wait()
    server.close()
    for call in calls.values():
        await call.close()


# The parties process -------------------------------------------------------------


class Party:
    def __init__(self, leg: Leg, count: int, start: asyncio.Event) -> None:
        # Imported here: numpy (for encoding the tone once) stays out of the server's RSS.
        from tests.media_tools import EncodedToneTrack

        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.track = EncodedToneTrack(TONES[leg], count, start=start)
        self.pc.addTrack(self.track)
        self.heard = 0
        (transceiver,) = self.pc.getTransceivers()
        bypass_decoding(transceiver.receiver, self._count)

    def _count(self, packet: Any, arrival_ms: int) -> None:
        self.heard += 1


async def parties(spec: dict[str, Any]) -> dict[str, Any]:
    count = int(spec["duration"] * 50)
    start = asyncio.Event()
    calls = [{leg: Party(leg, count, start) for leg in LEGS} for _ in range(spec["calls"])]
    limit = asyncio.Semaphore(SETUP_CONCURRENCY)
    streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(index: int, body: dict[str, Any]) -> Any:
        reader, writer = streams[index]
        writer.write(orjson.dumps({**body, "call": index}) + b"\n")
        return orjson.loads(await reader.readline())

    async def connect(index: int) -> None:
        async with limit:
            for leg, party in calls[index].items():
                await party.pc.setLocalDescription(await party.pc.createOffer())
                offer = party.pc.localDescription
                answer = await request(index, {"op": "answer", "leg": leg, "sdp": offer.sdp})
                await party.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))

    idle_rss = rss_kib(spec["server_pid"])
    for _ in calls:
        streams.append(await asyncio.open_unix_connection(spec["socket"], limit=2**20))
    set_up = time.monotonic()
    await asyncio.gather(*(connect(index) for index in range(len(calls))))
    everyone = [party for call in calls for party in call.values()]
    async with asyncio.timeout(120):
        while any(party.pc.connectionState != "connected" for party in everyone):
            await asyncio.sleep(0.05)
    set_up = time.monotonic() - set_up

    server = spec["server_pid"]
    start.set()
    await asyncio.sleep(spec["warmup"])
    cpu0, parties0, t0 = cpu_seconds(server), cpu_seconds(os.getpid()), time.monotonic()
    await asyncio.sleep(spec["duration"] - spec["warmup"] - 1)
    cpu1, parties1, t1 = cpu_seconds(server), cpu_seconds(os.getpid()), time.monotonic()
    rss = rss_kib(server)
    async with asyncio.timeout(30):
        for party in everyone:
            await party.track.done.wait()
    await asyncio.sleep(1)  # packets in flight and queued on loopback

    legs = []
    for index, call in enumerate(calls):
        results = await request(index, {"op": "close"})
        for leg, party in call.items():
            other: Leg = "callee" if leg == "caller" else "caller"
            result = results[leg]
            legs.append(
                {
                    "sent": party.track.sent,
                    "received": result["packets"],
                    "lost": result["lost"],
                    # this party's audio, on its way to the other party
                    "forwarded": results[other]["forwarded_to"],
                    "dropped": results[other]["dropped_to"],
                    "heard": call[other].heard,
                    "duration_ms": result["duration_ms"],
                    "error": result["error"],
                }
            )
    for call in calls:
        for party in call.values():
            await party.pc.close()
    for _, writer in streams:
        writer.close()
    window = t1 - t0
    return {
        "calls": spec["calls"],
        "set_up_s": set_up,
        "window_s": window,
        "server_cpu": (cpu1 - cpu0) / window,
        "parties_cpu": (parties1 - parties0) / window,
        "server_rss_kib": rss,
        "server_idle_rss_kib": idle_rss,
        "legs": legs,
    }


# The runner ----------------------------------------------------------------------


def run_level(calls: int, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    socket_path = folder / f"server-{calls}.sock"
    legs = folder / f"legs-{calls}"
    legs.mkdir()
    profiler: list[str] = []
    if args.profile:
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"profile-{datetime.now():%Y%m%d-%H%M%S}-recordings-{calls}.txt"
        py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
        profiler = [py_spy, "record", "--format", "raw", "--threads", "-o", str(out), "--"]
    server = subprocess.Popen(
        ["taskset", "-c", SERVER_CPU, *profiler, sys.executable, "-m", "bench.recordings"]
        + ["--serve", str(socket_path), str(legs)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        pid = ""
        for line in server.stdout:  # py-spy may say something first
            if line.startswith("ready "):
                pid = line.split()[1]
                break
        if not pid:
            raise RuntimeError("the server did not start")
        spec = {
            "calls": calls,
            "duration": args.duration,
            "warmup": args.warmup,
            "socket": str(socket_path),
            "server_pid": int(pid),
        }
        done = subprocess.run(
            ["taskset", "-c", PARTIES_CPU, sys.executable, "-m", "bench.recordings"]
            + ["--parties", orjson.dumps(spec).decode()],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=args.duration + 300,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"the parties failed:\n{done.stderr[-4000:]}")
        result: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])
        return result
    finally:
        if profiler:
            os.kill(int(pid), signal.SIGTERM)  # py-spy writes its output when it ends
        else:
            server.terminate()
        server.wait(timeout=30)


def summarise(level: dict[str, Any]) -> dict[str, Any]:
    legs = level["legs"]
    sent = sum(leg["sent"] for leg in legs)
    received = sum(leg["received"] for leg in legs)
    forwarded = sum(leg["forwarded"] for leg in legs)
    heard = sum(leg["heard"] for leg in legs)
    dropped = sum(leg["dropped"] for leg in legs)
    complete = min(leg["duration_ms"] / (leg["sent"] * 20) for leg in legs)
    clean = (
        received == sent
        and heard == sent
        and dropped == 0
        and complete >= 0.995
        and not any(leg["error"] for leg in legs)
    )
    return {
        "calls": level["calls"],
        "cpu": level["server_cpu"] * 100,
        "per_call": level["server_cpu"] * 100 / level["calls"],
        "sent": sent,
        "lost_in": sent - received,
        "forwarded": forwarded,
        "lost_out": forwarded - heard,
        "dropped": dropped,
        "complete": complete * 100,
        "rss": level["server_rss_kib"] / 1024,
        "rss_per_call": (level["server_rss_kib"] - level["server_idle_rss_kib"]) / level["calls"],
        "parties_cpu": level["parties_cpu"] * 100,
        "set_up": level["set_up_s"],
        "clean": "yes" if clean else "NO",
    }


def table(rows: list[dict[str, Any]], load: str, duration: float) -> str:
    head = (
        "| calls | server CPU (% of a core) | CPU per call | packets sent | lost on the way"
        " in | forwarded | lost on the way out | queue drops | completeness (min leg)"
        " | server RSS (per call) | parties' CPU | set-up | clean |"
    )
    lines = [
        f"Recorded calls, {duration:g} s of audio each way per call; load before the run: {load}",
        "",
        head,
        "|" + " --- |" * (head.count("|") - 1),
    ]
    for r in rows:
        lines.append(
            f"| {r['calls']} | {r['cpu']:.1f} % | {r['per_call']:.2f} % | {r['sent']}"
            f" | {r['lost_in']} | {r['forwarded']} | {r['lost_out']} | {r['dropped']}"
            f" | {r['complete']:.2f} % | {r['rss']:.0f} MiB ({r['rss_per_call']:.0f} KiB)"
            f" | {r['parties_cpu']:.0f} %"
            f" | {r['set_up']:.1f} s | {r['clean']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recordings", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 and 5 calls, 6 s each")
    parser.add_argument("--calls", default="10,20,40,60", help="concurrent calls per level")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of audio")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record the server with py-spy (raw stacks in bench/results/; read them with"
        " python -m bench.stacks FILE)",
    )
    parser.add_argument("--serve", nargs=2, metavar=("SOCKET", "FOLDER"), help=argparse.SUPPRESS)
    parser.add_argument("--parties", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        raise_fd_limit()
        uvloop.run(serve(Path(args.serve[0]), Path(args.serve[1])))
        return 0
    if args.parties:
        raise_fd_limit()
        print(orjson.dumps(uvloop.run(parties(orjson.loads(args.parties)))).decode())
        return 0
    if args.quick:
        args.calls, args.duration = "2,5", 6.0
    levels = [int(value) for value in args.calls.split(",")]
    load = Path("/proc/loadavg").read_text().split()[:3]
    started = datetime.now()
    folder = Path(tempfile.mkdtemp(prefix="bench-recordings-"))
    rows, raw = [], []
    try:
        for calls in levels:
            print(f"{calls} calls ...", file=sys.stderr, flush=True)
            level = run_level(calls, args, folder)
            raw.append(level)
            rows.append(summarise(level))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(table(rows, " ".join(load), args.duration))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{started:%Y%m%d-%H%M%S}-recordings.json"
    out.write_bytes(
        orjson.dumps(
            {"started": started.isoformat(), "load": load, "rows": rows, "levels": raw},
            option=orjson.OPT_INDENT_2,
        )
    )
    print(f"results written to {out.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
