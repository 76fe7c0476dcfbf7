"""What every single-server scenario benchmark (``bench.search``, ``bench.bookings``)
does around its own measurement, written once:

- ``python -m bench.<name> --load SPEC OUT``: the load-client process (core 1) runs the
  scenario's ``load_main(spec)`` and writes its result;
- otherwise: parse the options, make a temporary folder and a :class:`~bench.run.Runner`,
  warn when the machine is busy, run the scenario's ``measure``, stop everything it
  started whatever happens (errors, Ctrl-C, SIGTERM), print the table and write
  ``bench/results/<timestamp>-<name>.json``.

A scenario's ``measure(args, runner, spec)`` starts PostgreSQL and seeds it, starts the
server and calls ``runner.run_load(server, name, spec)``; it returns a :class:`Measured`.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import uvloop

from bench import report
from bench.procfs import raise_fd_limit
from bench.run import Plan, Runner, busy_cpus, environment, save_results, say


@dataclass
class Measured:
    table: str
    result: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)  # more for the results file
    failed: bool = False  # exit 1 (e.g. error answers) after printing the table


def plan_for(args: argparse.Namespace) -> Plan:
    """The runner's plan for a scenario: windows from the options, our server only."""
    return Plan(
        idle=(),
        fanout=0,
        rounds=0,
        ping=(),
        warmup=args.warmup,
        duration=args.duration,
        windows=args.windows,
        repeats=1,
        settle=0.0,
        concurrency=50,
        servers=(report.OURS,),
        profile=getattr(args, "profile", False),
    )


def main(
    name: str,
    argv: list[str] | None,
    *,
    parse_args: Callable[[list[str]], argparse.Namespace],
    load_main: Callable[[dict[str, Any]], Coroutine[Any, Any, dict[str, Any]]],
    measure: Callable[[argparse.Namespace, Runner], Measured],
    runner_class: type[Runner] = Runner,
) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--load"]:
        spec = orjson.loads(Path(argv[1]).read_bytes())
        raise_fd_limit()
        result = uvloop.run(load_main(spec))
        Path(argv[2]).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
        return 0
    args = parse_args(argv)
    raise_fd_limit()

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    started = datetime.now()
    workdir = Path(tempfile.mkdtemp(prefix=f"rtc-bench-{name}-"))
    runner = runner_class(plan_for(args), workdir)
    busy = busy_cpus()
    if busy > 0.1:
        say(f"warning: other processes keep {busy:.2f} CPUs busy; the figures will be noisy")
    try:
        measured = measure(args, runner)
    except KeyboardInterrupt:
        say("interrupted: stopping everything")
        return 130
    except RuntimeError as exc:
        say(f"failed: {exc}")
        return 1
    finally:
        runner.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print(measured.table)
    save_results(
        started,
        f"-{name}",
        {
            "args": vars(args),
            "environment": {**environment(), "busy_cpus_before": busy},
            **measured.extra,
            "result": measured.result,
            "table": measured.table,
        },
    )
    return 1 if measured.failed else 0
