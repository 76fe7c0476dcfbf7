"""Ogg/Opus files written by hand: encapsulation only, no codec work on the hot path.

Why by hand and not PyAV's muxer: the recording's timeline is the RTP timeline, and we
need exact control of granule positions, of the filler packets that keep a gap in its
place, and of what happens on a write error (an ``OSError`` we see at once, not an
FFmpeg error at some later flush). The format is small:

- RFC 3533 (Ogg): pages of up to 255 lacing segments, a CRC-32 (polynomial 0x04C11DB7,
  not reflected, initial value 0) over the page with its CRC field zeroed.
- RFC 7845 (Ogg Opus): page 0 holds only the ``OpusHead`` packet, page 1 only
  ``OpusTags``; audio starts on page 2. The granule position of a page is the number of
  48 kHz samples (pre-skip included) up to the end of the last packet that ends on it.

:class:`OggOpusPager` turns packets into page bytes with no I/O;
:class:`OggOpusFile` writes those bytes to a file.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

RATE = 48_000
OPUS_HEAD_VERSION = 1
VENDOR = b"buildxpert-rtc"

# A page is written when it holds this much audio (1 s of 20 ms packets) or when the
# lacing table would overflow: a crash or a full disk loses about a second at most.
PAGE_SAMPLES = RATE
MAX_SEGMENTS = 255

_BIT_REVERSED = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def ogg_crc(data: bytes) -> int:
    """Ogg's CRC-32 (RFC 3533 section 6) computed by zlib's C code.

    zlib computes the bit-reflected CRC-32 with the same polynomial; feeding it the input
    with each byte's bits reversed, with a zero start register and no final xor, gives
    the bit reversal of Ogg's CRC. A pure Python loop costs too much per page.
    """
    reflected = zlib.crc32(data.translate(_BIT_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{reflected:032b}"[::-1], 2)


def opus_head(*, channels: int = 1, pre_skip: int = 0, input_rate: int = RATE) -> bytes:
    """The ``OpusHead`` identification header (RFC 7845 section 5.1), mapping family 0."""
    if channels not in (1, 2):
        raise ValueError(f"mapping family 0 carries 1 or 2 channels, not {channels}")
    return b"OpusHead" + struct.pack(
        "<BBHIhB", OPUS_HEAD_VERSION, channels, pre_skip, input_rate, 0, 0
    )


def opus_tags(vendor: bytes = VENDOR, comments: tuple[bytes, ...] = ()) -> bytes:
    """The ``OpusTags`` comment header (RFC 7845 section 5.2)."""
    out = [b"OpusTags", struct.pack("<I", len(vendor)), vendor, struct.pack("<I", len(comments))]
    for comment in comments:
        out += [struct.pack("<I", len(comment)), comment]
    return b"".join(out)


def opus_packet_samples(packet: bytes) -> int:
    """The duration in 48 kHz samples of an Opus packet, from its TOC (RFC 6716 3.1).

    Raises ``ValueError`` for an empty or malformed packet.
    """
    if not packet:
        raise ValueError("an Opus packet has at least its TOC byte")
    toc = packet[0]
    config = toc >> 3
    if config < 12:  # SILK-only: 10, 20, 40, 60 ms
        frame = (480, 960, 1920, 2880)[config & 3]
    elif config < 16:  # hybrid: 10, 20 ms
        frame = (480, 960)[config & 1]
    else:  # CELT-only: 2.5, 5, 10, 20 ms
        frame = (120, 240, 480, 960)[config & 3]
    code = toc & 3
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    else:
        if len(packet) < 2:
            raise ValueError("an Opus code 3 packet needs its frame count byte")
        count = packet[1] & 0x3F
        if count == 0:
            raise ValueError("an Opus code 3 packet with zero frames")
    samples = frame * count
    if samples > 5760:  # 120 ms (RFC 6716 3.2.5)
        raise ValueError(f"an Opus packet lasts at most 120 ms, not {samples / 48} ms")
    return samples


def opus_filler(toc: int) -> tuple[bytes, int]:
    """A packet that stands for one lost frame, and its duration in samples.

    A code 0 packet with only its TOC byte holds one frame of length zero, which decoders
    treat as lost and conceal (RFC 6716 section 3.2.1), producing the frame's duration in
    samples: the gap keeps its place in time, and sounds like what the receiver of the
    call heard. The TOC of the packet before the gap is reused so that the concealment
    stays in the same mode and bandwidth.
    """
    filler = bytes((toc & 0xFC,))
    return filler, opus_packet_samples(filler)


class OggOpusPager:
    """Ogg pages of one Opus logical stream, built in memory (no I/O).

    ``headers()`` first, then ``add(packet, samples)`` for each audio packet in order;
    both return the bytes of the pages completed by the call (maybe empty). ``finish()``
    returns the last page, marked end-of-stream.
    """

    def __init__(self, serial: int, *, channels: int = 1, pre_skip: int = 0) -> None:
        self._serial = serial & 0xFFFFFFFF
        self._channels = channels
        self._pre_skip = pre_skip
        self._sequence = 0
        self._granule = pre_skip
        self._packets: list[bytes] = []
        self._segments = 0
        self._page_samples = 0
        self._finished = False

    @property
    def granule(self) -> int:
        """Samples written so far, pre-skip included."""
        return self._granule

    def headers(self) -> bytes:
        head = opus_head(channels=self._channels, pre_skip=self._pre_skip)
        return self._page([head], granule=0, bos=True) + self._page([opus_tags()], granule=0)

    def add(self, packet: bytes, samples: int) -> bytes:
        if self._finished:
            raise ValueError("the stream is finished")
        segments = len(packet) // 255 + 1
        if segments > MAX_SEGMENTS:
            raise ValueError(f"an audio packet of {len(packet)} bytes does not fit one page")
        out = b""
        # A full page goes out only when the next packet comes, so that the last page
        # (end-of-stream) always carries packets and a granule position of its own.
        if self._packets and (
            self._page_samples >= PAGE_SAMPLES or self._segments + segments > MAX_SEGMENTS
        ):
            out = self._flush()
        self._packets.append(packet)
        self._segments += segments
        self._granule += samples
        self._page_samples += samples
        return out

    def finish(self) -> bytes:
        """The last page, with the end-of-stream flag (empty if already finished)."""
        if self._finished:
            return b""
        self._finished = True
        return self._page(self._packets, granule=self._granule, eos=True)

    def _flush(self) -> bytes:
        if not self._packets:
            return b""
        page = self._page(self._packets, granule=self._granule)
        self._packets = []
        self._segments = 0
        self._page_samples = 0
        return page

    def _page(
        self, packets: list[bytes], *, granule: int, bos: bool = False, eos: bool = False
    ) -> bytes:
        lacing = bytearray()
        for packet in packets:
            lacing += b"\xff" * (len(packet) // 255)
            lacing.append(len(packet) % 255)
        flags = (0x02 if bos else 0) | (0x04 if eos else 0)
        header = struct.pack(
            "<4sBBqIIIB",
            b"OggS",
            0,
            flags,
            granule,
            self._serial,
            self._sequence,
            0,
            len(lacing),
        )
        page = bytearray(header + lacing + b"".join(packets))
        struct.pack_into("<I", page, 22, ogg_crc(bytes(page)))
        self._sequence += 1
        return bytes(page)


class OggOpusFile:
    """One Ogg/Opus file on disk, fed packets in timeline order.

    Writes go straight to the file descriptor, a page (about a second of audio) at a
    time. An ``OSError`` (disk full, I/O error) propagates to the caller, which stops
    writing: the file then ends at the last whole page. ``close()`` is idempotent.
    """

    def __init__(self, path: Path, *, serial: int, channels: int = 1) -> None:
        self.path = path
        self.bytes = 0
        self._pager = OggOpusPager(serial, channels=channels)
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            self._write(self._pager.headers())
        except OSError:
            self._close_fd()
            raise

    @property
    def samples(self) -> int:
        return self._pager.granule

    @property
    def closed(self) -> bool:
        return self._fd is None

    def write(self, packet: bytes, samples: int) -> None:
        if self._fd is None:
            raise ValueError(f"{self.path} is closed")
        page = self._pager.add(packet, samples)
        if page:
            self._write(page)

    def close(self) -> None:
        """Write the last page and close; on an error the descriptor is still closed."""
        if self._fd is None:
            return
        try:
            self._write(self._pager.finish())
        finally:
            self._close_fd()

    def abandon(self) -> None:
        """Close without writing anything more (after a write error)."""
        self._close_fd()

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            self.bytes += written
            view = view[written:]

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
