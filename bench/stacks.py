"""Summarise a py-spy ``--format raw`` profile (collapsed stacks), as written by
``python -m bench --profile``:

    python -m bench.stacks bench/results/profile-…-ours-ping.txt [--top 30] [--match TEXT]
                           [--lines]

Prints the functions with the most samples on top of the stack (self) and anywhere
in it (inclusive), as a share of all samples. ``--match`` keeps only stacks through a
frame containing TEXT (e.g. ``handle_text``), to look inside one code path.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def read(
    path: Path, match: str | None, lines: bool = False
) -> tuple[Counter[str], Counter[str], int]:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [f for f in stack.split(";") if f]
        if match is not None and not any(match in f for f in frames):
            continue
        count = int(count_text)
        total += count
        own[_short(frames[-1], lines)] += count
        for frame in {_short(f, lines) for f in frames}:
            inclusive[frame] += count
    return own, inclusive, total


def _short(frame: str, lines: bool) -> str:
    # "function (path/to/file.py:123)" -> "function (to/file.py)", or with its line
    name, _, where = frame.partition(" (")
    if not where:
        return frame
    file_line = where.rstrip(")")
    file_part, _, line = file_line.rpartition(":")
    parts = file_part.split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else file_part
    return f"{name} ({short}:{line})" if line and lines else f"{name} ({short})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--match")
    parser.add_argument("--lines", action="store_true", help="tell lines of a function apart")
    args = parser.parse_args()
    own, inclusive, total = read(args.profile, args.match, args.lines)
    if not total:
        print("no samples")
        return 1
    for title, counter in (("self", own), ("inclusive", inclusive)):
        print(f"{title} ({total} samples)")
        for frame, count in counter.most_common(args.top):
            print(f"  {100 * count / total:5.1f}%  {frame}")
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
