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
