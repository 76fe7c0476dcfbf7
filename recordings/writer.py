"""A leg's Ogg/Opus file written off the event loop, at most a few seconds behind.

The event loop carries every call's audio: a ``write()`` that blocks (a disk in
writeback throttling, a slow network filesystem) would stall the forwarding of every
call in the process. So the loop only collects packets, about a second at a time, and
one background thread per process appends them to the files. The queue is bounded:
a leg more than ``max_pending`` batches behind is given up ("disk too slow") rather
than held in memory.
"""

from __future__ import annotations

import asyncio
import errno
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from recordings.ogg import RATE, OggOpusFile

BATCH_SAMPLES = RATE  # about a second of audio per hand-over to the thread
MAX_PENDING = 10  # batches waiting for the thread, per leg

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _writer_thread() -> ThreadPoolExecutor:
    """The process's one writer thread (appends are short; one thread keeps order)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(1, thread_name_prefix="recording-writer")
        return _executor


class DiskTooSlow(OSError):
    def __init__(self) -> None:
        super().__init__(errno.EIO, "the disk is too slow: recording given up")


class LegWriter:
    """Packets in timeline order in (on the loop), one Ogg/Opus file out (in a thread).

    ``on_error(exc)`` is called once, on the loop, with the first error (an ``OSError``
    for a full disk or an I/O error); after it the leg writes nothing more and the file
    ends at its last whole page. ``await close()`` returns once everything given to
    ``write()`` is on disk (or has failed).
    """

    def __init__(
        self,
        path: Path,
        *,
        serial: int,
        on_error: Callable[[Exception], None],
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.path = path
        self.failed = False
        self._serial = serial
        self._on_error = on_error
        self._max_pending = max_pending
        self._file: OggOpusFile | None = None  # used by the writer thread only
        self._batch: list[tuple[bytes, int]] = []
        self._batch_samples = 0
        self._pending = 0
        self._last: asyncio.Future[Any] | None = None
        self._closed = False
        self._submit(self._open)

    @property
    def size(self) -> int:
        """Bytes on disk (final once ``close()`` returned)."""
        return self._file.bytes if self._file is not None else 0

    def write(self, payload: bytes, samples: int) -> None:
        if self.failed or self._closed:
            return
        self._batch.append((payload, samples))
        self._batch_samples += samples
        if self._batch_samples >= BATCH_SAMPLES:
            self._hand_over()

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            if not self.failed:
                self._hand_over()
            # The last job closes the file whatever happened (past the bound: it frees).
            self._submit(self._finish, bounded=False)
        if self._last is not None:
            await asyncio.wait([self._last])

    def _hand_over(self) -> None:
        batch, self._batch, self._batch_samples = self._batch, [], 0
        if batch:
            self._submit(self._append, batch)

    def _submit(self, job: Callable[..., None], *args: Any, bounded: bool = True) -> None:
        if bounded and self.failed:
            return
        if bounded and self._pending >= self._max_pending:
            self._fail(DiskTooSlow())
            return
        self._pending += 1
        future = asyncio.get_running_loop().run_in_executor(_writer_thread(), job, *args)
        future.add_done_callback(self._done)
        self._last = future

    def _done(self, future: asyncio.Future[Any]) -> None:
        self._pending -= 1
        if future.cancelled():
            self._fail(OSError(errno.ECANCELED, "the writer was stopped"))
            return
        exc = future.exception()
        if exc is not None:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if self.failed:
            return
        self.failed = True
        if not isinstance(exc, Exception):
            exc = RuntimeError(repr(exc))
        self._on_error(exc)

    # In the writer thread ---------------------------------------------------------

    def _open(self) -> None:
        self._file = OggOpusFile(self.path, serial=self._serial)

    def _append(self, batch: list[tuple[bytes, int]]) -> None:
        file = self._file
        if file is None or file.closed:  # an earlier job failed
            return
        try:
            for payload, samples in batch:
                file.write(payload, samples)
        except BaseException:
            file.abandon()
            raise

    def _finish(self) -> None:
        # Also after "disk too slow": what was queued is written and the file ends
        # properly. After a write error the file was abandoned and this does nothing.
        if self._file is not None:
            self._file.close()
