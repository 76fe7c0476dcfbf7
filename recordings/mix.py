"""Both legs of a recording in one file, made after the call by a background job.

The legs are decoded (PyAV: FFmpeg's Opus decoder), each placed at its offset on the
call's timeline (``recording_legs.offset_ms``: when its first packet arrived), summed,
and encoded again as one Ogg/Opus file. This is the only place audio is decoded or
encoded, and it runs in a worker thread of the job queue, never on the call path:
CPU-bound work that blocks nothing but its own thread (FFmpeg releases the GIL while it
codes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np

RATE = 48_000
FRAME = 960  # 20 ms


def decode(path: Path) -> np.ndarray[Any, np.dtype[np.float32]]:
    """An Ogg/Opus file's audio as mono signed 16-bit samples at 48 kHz (float32)."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    chunks = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
    for out in resampler.resample(None):
        chunks.append(out.to_ndarray().reshape(-1))
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32)


def mix_legs(legs: list[tuple[Path, int]], out: Path, *, bit_rate: int = 32_000) -> int:
    """Mix ``(file, offset ms)`` legs into one Ogg/Opus file at ``out``; its duration (ms)."""
    placed = [(offset_ms * RATE // 1000, decode(path)) for path, offset_ms in legs]
    length = max((start + len(samples) for start, samples in placed), default=0)
    mixed = np.zeros(length, dtype=np.float32)
    for start, samples in placed:
        mixed[start : start + len(samples)] += samples
    pcm = np.clip(mixed, -32768, 32767).astype(np.int16)
    with av.open(str(out), "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=RATE, layout="mono")
        stream.bit_rate = bit_rate
        for start in range(0, length, FRAME):
            chunk = pcm[start : start + FRAME]
            if len(chunk) < FRAME:
                chunk = np.pad(chunk, (0, FRAME - len(chunk)))
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = RATE
            frame.pts = start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return length * 1000 // RATE
