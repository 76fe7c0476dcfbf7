"""Tables of the benchmark's figures: our server and the bare one side by side."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

OURS, BARE = "ours", "bare"

# Targets the figures are held to.
MAX_KIB_PER_SOCKET = 16.0
MAX_CPU_RATIO = 1.2
MAX_HANDSHAKE_RATIO = 1.5  # server CPU per authenticated handshake, ours / bare
MAX_FANOUT_MS = 60.0


@dataclass(frozen=True)
class Row:
    sockets: int
    metric: str
    ours: float | None
    bare: float | None
    digits: int = 1
    target: str = ""
    met: bool | None = None
    ratio: bool = True  # print ours/bare


def _number(value: float | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _ratio(row: Row) -> str:
    if not row.ratio or row.ours is None or row.bare is None or row.bare == 0:
        return ""
    return f"{row.ours / row.bare:.2f}x"


def render(title: str, notes: list[str], rows: list[Row]) -> str:
    header = ("sockets", "metric", "ours", "bare", "ours/bare", "target")
    cells = [
        (
            f"{r.sockets:,}",
            r.metric,
            _number(r.ours, r.digits),
            _number(r.bare, r.digits),
            _ratio(r),
            r.target + ("" if r.met is None else ("  met" if r.met else "  MISSED")),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    right = {0, 2, 3, 4}

    def line(values: tuple[str, ...]) -> str:
        return "  ".join(
            v.rjust(w) if i in right else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    rule = "-" * len(line(header))
    out = [title, *("  " + n for n in notes), rule, line(header), rule]
    previous = None
    for row, values in zip(rows, cells, strict=True):
        if previous is not None and row.sockets != previous:
            out.append("")
        out.append(line(values))
        previous = row.sockets
    out.append(rule)
    return "\n".join(out)


Pair = tuple[float | None, float | None]


def _pair(by_server: dict[str, Any], key: str, scale: float = 1.0) -> Pair:
    """(ours, bare) of one figure; None where that server was not measured."""
    values = [
        by_server[s][key] * scale if s in by_server and by_server[s].get(key) is not None else None
        for s in (OURS, BARE)
    ]
    return values[0], values[1]


def idle_table(idle: dict[str, dict[int, Any]], browser_headers: bool) -> str:
    rows: list[Row] = []
    counts = sorted({n for by_count in idle.values() for n in by_count})
    for n in counts:
        results = {s: by_count[n] for s, by_count in idle.items() if n in by_count}
        per_socket = _pair(results, "kib_per_socket")
        rows += [
            Row(n, "server RSS before, MiB", *_pair(results, "rss_before_kib", 1 / 1024)),
            Row(n, "server RSS after, MiB", *_pair(results, "rss_after_kib", 1 / 1024)),
            Row(
                n,
                "RSS per idle socket, KiB",
                *per_socket,
                2,
                f"ours <= {MAX_KIB_PER_SOCKET:g} KiB",
                None if per_socket[0] is None else per_socket[0] <= MAX_KIB_PER_SOCKET,
            ),
            _handshake_row(n, _pair(results, "server_cpu_us_per_open")),
            Row(
                n,
                "PostgreSQL CPU per handshake, us",
                *_pair(results, "postgres_cpu_us_per_open"),
                0,
                ratio=False,
            ),
            Row(n, "sockets opened per second", *_pair(results, "open_per_second"), 0),
        ]
    return render(
        "Figure 1. Memory per idle socket",
        [
            "Server VmRSS after bench.gc (gc.collect + malloc_trim) and a settle pause, before",
            "and after N sockets are open and idle. Ours: every socket authenticated at the",
            "handshake (Authorization: Bearer) and counted once session.ready arrived;",
            "bare: plain websockets connections. CPU per handshake: the server process;",
            "PostgreSQL's (ours: session check, event cursor, replay) on its own row.",
            "Handshakes carry a browser's headers (User-Agent, Origin ...): bare keeps them per"
            " socket, ours empties them once the socket is open."
            if browser_headers
            else "Handshakes carry only the required headers (a browser's add ~3 KiB per socket"
            " to bare: --browser-headers).",
        ],
        rows,
    )


def _handshake_row(n: int, pair: Pair) -> Row:
    ours, bare = pair
    met = None if ours is None or not bare else ours <= MAX_HANDSHAKE_RATIO * bare
    return Row(
        n,
        "server CPU per handshake, us",
        ours,
        bare,
        0,
        f"<= {MAX_HANDSHAKE_RATIO:g}x bare" if met is not None else "",
        met,
    )


def ping_table(ping: dict[str, Any], rate_note: str) -> str:
    by_count: dict[int, dict[str, Any]] = {}
    for server, result in ping.items():
        for run in result["runs"]:
            low, high = run["server_cpu_us_per_request_range"]
            by_count.setdefault(run["sockets"], {})[server] = {
                **run,
                "cpu_low": low,
                "cpu_high": high,
            }
    rows: list[Row] = []
    window, windows, processes = 0.0, 1, 1
    for n in sorted(by_count):
        runs = by_count[n]
        first = next(iter(runs.values()))
        window, windows = first["window_seconds"], first["windows"]
        processes = first["processes"]
        cpu = _pair(runs, "server_cpu_us_per_request")
        ratio = None if cpu[0] is None or not cpu[1] else cpu[0] / cpu[1]
        rows += [
            Row(n, "requests per second", *_pair(runs, "requests_per_second"), 0),
            Row(n, "latency p50, ms", *_pair(runs, "p50_ms"), 3),
            Row(n, "latency p99, ms", *_pair(runs, "p99_ms"), 3),
            Row(
                n,
                "server CPU per request, us",
                *cpu,
                1,
                f"<= {MAX_CPU_RATIO:g}x bare",
                None if ratio is None else ratio <= MAX_CPU_RATIO,
            ),
            Row(n, "  lowest window", *_pair(runs, "cpu_low"), 1, ratio=False),
            Row(n, "  highest window", *_pair(runs, "cpu_high"), 1, ratio=False),
            Row(n, "  of which user, us", *_pair(runs, "server_user_us_per_request"), 1),
            Row(n, "  of which system, us", *_pair(runs, "server_system_us_per_request"), 1),
            Row(n, "server CPU busy, %", *_pair(runs, "server_cpu_busy", 100), 0),
            Row(n, "load client CPU busy, %", *_pair(runs, "client_cpu_busy", 100), 0, ratio=False),
            Row(
                n,
                "server core: other tasks, %",
                *_pair(runs, "core_other_tasks", 100),
                0,
                ratio=False,
            ),
            Row(n, "server core: irq+softirq, %", *_pair(runs, "core_irq", 100), 0, ratio=False),
            Row(n, "errors", *_pair(runs, "errors"), 0, ratio=False),
        ]
    return render(
        "Figure 2. system.ping, closed loop (one request outstanding per socket)",
        [
            (
                f"{windows} window{'s' if windows != 1 else ''} of {window:.0f} s per server, after"
                f" a warm-up, from {processes} server process{'es' if processes != 1 else ''}"
                " each (alternated);"
            ),
            "every figure is the median over the windows; latency is seen by the client;",
            "server CPU = utime+stime of the server process over a window / answers in it.",
            rate_note,
        ],
        rows,
    )


def fanout_table(fanout: dict[str, Any], postgres_cpu: str = "0") -> str:
    first = next(iter(fanout.values()))
    n = first["sockets"]
    rounds = len([r for r in first["rounds"] if not r["warmup"]])
    last = _pair(fanout, "last_ms_median")
    rows = [
        Row(
            n,
            "to last socket, median, ms",
            *last,
            1,
            f"ours <= {MAX_FANOUT_MS:g} ms",
            None if last[0] is None else last[0] <= MAX_FANOUT_MS,
        ),
        Row(n, "to last socket, best, ms", *_pair(fanout, "last_ms_best"), 1),
        Row(n, "to 50% of sockets, median, ms", *_pair(fanout, "p50_ms_median"), 1),
        Row(n, "to first socket, median, ms", *_pair(fanout, "first_ms_median"), 1),
        Row(n, "server: whole call, median, ms", *_pair(fanout, "server_ms_median"), 1),
        Row(n, "server: live delivery, median, ms", *_pair(fanout, "deliver_ms_median"), 1),
        Row(n, "load client CPU per round, ms", *_pair(fanout, "client_cpu_ms_median"), 1),
        Row(n, "PostgreSQL CPU per round, mean, ms", *_pair(fanout, "postgres_cpu_ms_mean"), 1),
    ]
    where = (
        "the server's core" if postgres_cpu == "0" else f"core {postgres_cpu}, the load client's"
    )
    return render(
        f"Figure 3. One event to {n:,} users (one socket each), {rounds} rounds after a warm-up",
        [
            "From sending the trigger request to the event's arrival on each socket (client",
            "clock). Ours: bench.publishMany -> EventPublisher.publish_many (durable writes of",
            "events.fanout_chunk users each, every chunk delivered through the hub while the",
            "next is written); bare: websockets.broadcast of one pre-encoded frame. 'server'",
            "rows are timed inside the server process; for ours, live delivery is the sum",
            "over chunks, and whole call - live delivery = waiting for PostgreSQL, which runs",
            f"on {where}. CPU per round: the load client's and PostgreSQL's (all its processes)",
            "from sending the trigger until the last socket has the event.",
        ],
        rows,
    )


def metric_rows(
    rows: list[tuple[str, str, str]], value_header: str, rule_extra: int = 30
) -> list[str]:
    """A table of (metric, value, note) rows between rules, as the single-server
    benchmarks print it (bookings, search, calls)."""
    width = max(len(a) for a, _, _ in rows)
    vwidth = max(len(b) for _, b, _ in rows)
    rule = "-" * (width + vwidth + rule_extra)
    lines = [rule, f"{'metric':<{width}}  {value_header:>{vwidth}}  windows / note", rule]
    lines += [f"{a:<{width}}  {b:>{vwidth}}  {c}".rstrip() for a, b, c in rows]
    lines.append(rule)
    return lines
