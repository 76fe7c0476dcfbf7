"""What the benchmark reads from /proc and asks of each of its processes.

Linux only: RSS from ``/proc/<pid>/status`` (VmRSS) and CPU time from
``/proc/<pid>/stat`` (utime + stime, in clock ticks).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import resource
from dataclasses import dataclass
from pathlib import Path

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (VmRSS)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU time ``pid`` has used, in seconds (10 ms resolution)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        text = stat.read()
    # The command name (field 2) may hold spaces: count fields after its ")".
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return utime / _TICKS_PER_SECOND, stime / _TICKS_PER_SECOND


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time ``pid`` has used, in seconds (10 ms resolution)."""
    return sum(cpu_split(pid))


def core_seconds(cpu: int) -> dict[str, float]:
    """Time core ``cpu`` spent, by kind, since boot (seconds, from /proc/stat).

    ``tasks``: running any process (user, nice, system); ``irq``: interrupts and
    softirqs (loopback TCP is processed there); ``steal``: taken by the hypervisor;
    ``idle``: idle or waiting for I/O.
    """
    prefix = f"cpu{cpu} "
    with open("/proc/stat", encoding="ascii") as stat:
        for line in stat:
            if line.startswith(prefix):
                v = [int(x) / _TICKS_PER_SECOND for x in line.split()[1:9]]
                user, nice, system, idle, iowait, irq, softirq, steal = v
                return {
                    "tasks": user + nice + system,
                    "irq": irq + softirq,
                    "steal": steal,
                    "idle": idle + iowait,
                }
    raise RuntimeError(f"no cpu{cpu} in /proc/stat")


def postgres_cpu(postmaster: int) -> dict[int, float]:
    """CPU seconds of the postmaster and each of its children, by pid."""
    out: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                text = f.read()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if pid == postmaster or int(fields[1]) == postmaster:
            out[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit; returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def release_memory() -> int:
    """Collect garbage and hand free heap pages back to the OS (glibc ``malloc_trim``).

    Run in a server before its RSS is read, so that garbage and freed-but-kept heap
    do not count as the cost of the sockets. Returns the objects collected.
    """
    collected = gc.collect()
    name = ctypes.util.find_library("c")
    if name is not None:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass
    return collected


def postmaster_pid(pgdata: Path) -> int:
    """The pid of the PostgreSQL server whose data folder is ``pgdata``."""
    return int((pgdata / "postmaster.pid").read_text().split()[0])


def own_cpu_seconds() -> float:
    """User plus system CPU time of this process, in seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True, slots=True)
class CpuReading:
    """CPU time used so far by the server, this process, PostgreSQL and the server's core."""

    user: float
    system: float
    client: float
    postgres: dict[int, float]
    core: dict[str, float] | None


@dataclass(frozen=True, slots=True)
class CpuSpent:
    """CPU time spent between two readings, in seconds."""

    user: float
    system: float
    client: float
    postgres: float
    core_tasks: float | None
    core_irq: float | None

    @property
    def server(self) -> float:
        return self.user + self.system

    @staticmethod
    def keys(unit: str, core: bool = True) -> tuple[str, ...]:
        """The keys :meth:`figures` gives (``core``: with the server core's)."""
        keys = (
            f"server_cpu_us_per_{unit}",
            f"server_user_us_per_{unit}",
            f"server_system_us_per_{unit}",
            f"postgres_cpu_us_per_{unit}",
            "server_cpu_busy",
            "postgres_cpu_busy",
            "client_cpu_busy",
        )
        return (*keys, "core_busy", "core_irq") if core else keys

    def figures(self, count: int, unit: str, seconds: float) -> dict[str, float]:
        """Per ``unit`` (``count`` of them in the window, at least one) in µs, and how
        busy each process was over ``seconds``: the keys every benchmark reports."""
        n = max(1, count) / 1e6
        values = [self.server / n, self.user / n, self.system / n, self.postgres / n]
        values += [self.server / seconds, self.postgres / seconds, self.client / seconds]
        core = self.core_tasks is not None and self.core_irq is not None
        if self.core_tasks is not None and self.core_irq is not None:
            values += [self.core_tasks / seconds, self.core_irq / seconds]
        return dict(zip(self.keys(unit, core), values, strict=True))


class CpuMeter:
    """Reads the CPU of one measuring window: the server process, this process (the
    load client), PostgreSQL (the postmaster and all its children) and, if given, the
    server's core."""

    def __init__(self, server_pid: int, postmaster: int, server_core: int | None = None) -> None:
        self.server_pid = server_pid
        self.postmaster = postmaster
        self.server_core = server_core

    def read(self) -> CpuReading:
        user, system = cpu_split(self.server_pid)
        core = None if self.server_core is None else core_seconds(self.server_core)
        return CpuReading(user, system, own_cpu_seconds(), postgres_cpu(self.postmaster), core)

    def since(self, start: CpuReading) -> CpuSpent:
        end = self.read()
        # A backend born mid-window counts whole (it started at 0).
        postgres = sum(end.postgres[p] - start.postgres.get(p, 0.0) for p in end.postgres)
        tasks = irq = None
        if start.core is not None and end.core is not None:
            tasks = end.core["tasks"] - start.core["tasks"]
            irq = end.core["irq"] - start.core["irq"]
        return CpuSpent(
            end.user - start.user,
            end.system - start.system,
            end.client - start.client,
            postgres,
            tasks,
            irq,
        )
