"""LegWriter: a leg's file written by the background thread, in order, complete at
close; a full disk (/dev/full) reported once; a stalled writer thread (held by a real
job) makes the leg give up at its bound instead of queueing without end."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
from pathlib import Path

from recordings import writer as writer_module
from recordings.writer import BATCH_SAMPLES, DiskTooSlow, LegWriter
from tests.media_tools import decode_ogg, dominant_frequency, opus_tone

TONE = opus_tone(660.0, 1.0)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_everything_written_is_in_the_file_once_closed(tmp_path: Path) -> None:
    errors: list[Exception] = []
    path = tmp_path / "leg.ogg"
    writer = LegWriter(path, serial=9, on_error=errors.append)
    for index in range(175):  # 3.5 s: three whole batches and a part
        writer.write(TONE[index % 50], 960)
    await writer.close()
    await writer.close()  # idempotent
    writer.write(TONE[0], 960)  # ignored after close
    await writer.close()

    assert errors == [] and not writer.failed
    assert writer.size == path.stat().st_size > 0
    samples = decode_ogg(path)
    assert len(samples) == 175 * 960
    assert abs(dominant_frequency(samples) - 660) < 5


async def test_a_full_disk_is_reported_once_and_the_file_released(tmp_path: Path) -> None:
    path = tmp_path / "leg.ogg"
    path.symlink_to("/dev/full")
    before = open_fds()
    errors: list[Exception] = []
    writer = LegWriter(path, serial=1, on_error=errors.append)
    for index in range(150):
        writer.write(TONE[index % 50], 960)
    await writer.close()

    assert len(errors) == 1 and isinstance(errors[0], OSError)
    assert errors[0].errno == errno.ENOSPC
    assert writer.failed and writer.size == 0
    assert open_fds() == before


async def test_a_stalled_writer_gives_the_leg_up_at_its_bound(tmp_path: Path) -> None:
    stall = threading.Event()
    loop = asyncio.get_running_loop()
    # A real job holding the process's writer thread: what a disk stuck in writeback does.
    held = loop.run_in_executor(writer_module._writer_thread(), stall.wait, 10)
    errors: list[Exception] = []
    path = tmp_path / "leg.ogg"
    writer = LegWriter(path, serial=2, on_error=errors.append, max_pending=3)
    try:
        packets_per_batch = BATCH_SAMPLES // 960
        for index in range(packets_per_batch * 5):  # the open job, then 4 batches
            writer.write(TONE[index % 50], 960)
        assert len(errors) == 1 and isinstance(errors[0], DiskTooSlow)
        assert writer.failed
    finally:
        stall.set()
        await held
    await writer.close()
    assert len(errors) == 1
    # What was queued before the bound was written; the file is closed, not torn.
    assert len(decode_ogg(path)) == 2 * packets_per_batch * 960
