"""One leg's RTP packets put back on the call's timeline (pure logic, no I/O).

RTP packets arrive reordered, duplicated, lost, with 16-bit sequence numbers and 32-bit
timestamps that wrap, and with a new SSRC and random origins when a party reconnects.
A recording must keep every packet's place in time: :class:`LegTimeline` releases the
Opus packets in order, after a small reordering window, with a concealment filler (see
:func:`recordings.ogg.opus_filler`) for each lost frame. Decoders count samples, not
granule positions, so a gap only keeps its length if it is filled.

It also gives each packet its position on the leg's timeline as it arrives, which the
forwarding path uses as the packet's pts, so the other party hears one continuous
stream across a reconnect too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from recordings.ogg import RATE, opus_filler, opus_packet_samples

# Packets more than this many sequence numbers behind the newest one are not waited for.
REORDER_WINDOW = 5
# After this many packets in a row that look too late, the sender has restarted its
# numbering without a new SSRC (or sent one wild sequence number): start over.
RESYNC_AFTER = 25
# A gap longer than this is not filled with concealment (a paused or broken sender):
# the recording would grow by about 100 bytes a second of filler, unbounded.
MAX_GAP_SAMPLES = 60 * RATE


@dataclass(slots=True)
class _Stream:
    """The state of one SSRC's sequence and timestamp numbering."""

    ssrc: int
    highest_seq: int  # extended (unwrapped) sequence number
    highest_ts: int  # extended timestamp of the packet with the highest sequence number
    origin_ts: int  # extended timestamp that maps to ``offset`` on the timeline
    offset: int  # timeline position (samples) of ``origin_ts``
    next_seq: int  # next extended sequence number to release
    late_run: int = 0  # packets in a row that came after their turn
    started: bool = False  # whether a packet was released (until then, the stream's
    # first packet is not known: an earlier one may still come within the window)
    buffer: dict[int, tuple[int, bytes]] = field(default_factory=dict)  # seq -> (ts, payload)

    def extend_seq(self, seq: int) -> int:
        delta = (seq - self.highest_seq) & 0xFFFF
        if delta >= 0x8000:
            delta -= 0x10000
        return self.highest_seq + delta

    def extend_ts(self, timestamp: int) -> int:
        delta = (timestamp - self.highest_ts) & 0xFFFFFFFF
        if delta >= 0x80000000:
            delta -= 0x100000000
        return self.highest_ts + delta


class LegTimeline:
    """Orders one leg's Opus RTP packets and conceals the lost ones.

    ``receive()`` each received packet; it returns the packet's timeline position and
    the packets to write, in order, as ``(payload, samples)``. ``flush()`` at the end
    releases what the reordering window still holds (nothing is clipped).

    Counters: ``packets`` received (duplicates and malformed ones excluded), ``lost``
    (never received, concealed), ``discarded`` (duplicates, too late, malformed),
    ``samples`` released (audio and fillers).
    """

    def __init__(
        self, *, window: int = REORDER_WINDOW, max_gap_samples: int = MAX_GAP_SAMPLES
    ) -> None:
        if window < 0:
            raise ValueError("the reordering window cannot be negative")
        self._window = window
        self._max_gap = max_gap_samples
        self._stream: _Stream | None = None
        self._end: int | None = None  # where the written audio ends (samples)
        self._shift = 0  # timeline position minus written position
        self._last_arrival = 0.0  # arrival time of the newest packet taken
        self._last_samples = 0  # duration of the last packet written
        self._toc = 0x78  # TOC used for fillers (hybrid FB 20 ms until a packet is seen)
        self.packets = 0
        self.lost = 0
        self.discarded = 0
        self.samples = 0

    def receive(
        self, ssrc: int, seq: int, timestamp: int, payload: bytes, arrival: float
    ) -> tuple[int, list[tuple[bytes, int]]]:
        """Take one received packet (``arrival`` in seconds, any monotonic clock).

        Returns the packet's position on the timeline in samples (for forwarding; a
        late packet's may be earlier than earlier ones') and the packets to write now,
        in order, as ``(payload, samples)``.
        """
        out: list[tuple[bytes, int]] = []
        stream = self._stream
        if stream is None or stream.ssrc != ssrc:
            stream = self._new_stream(ssrc, seq, timestamp, arrival, out)
        ext_ts = stream.extend_ts(timestamp)
        position = stream.offset + ext_ts - stream.origin_ts
        try:
            opus_packet_samples(payload)
        except ValueError:
            self.discarded += 1
            return position, out
        ext = stream.extend_seq(seq)
        if ext in stream.buffer:
            self.discarded += 1
            return position, out
        too_late = (
            ext < stream.next_seq if stream.started else ext <= stream.highest_seq - self._window
        )
        if too_late:
            stream.late_run += 1
            if stream.late_run < RESYNC_AFTER:
                self.discarded += 1
                return position, out
            stream = self._new_stream(ssrc, seq, timestamp, arrival, out)
            ext, ext_ts, position = seq, timestamp, stream.offset
        stream.late_run = 0
        self.packets += 1
        if ext > stream.highest_seq:
            stream.highest_seq, stream.highest_ts = ext, ext_ts
        stream.buffer[ext] = (position, payload)
        self._last_arrival = arrival
        self._release(stream, out, final=False)
        return position, out

    def flush(self) -> list[tuple[bytes, int]]:
        """Release everything still held (at hang-up, or before a new stream)."""
        out: list[tuple[bytes, int]] = []
        if self._stream is not None:
            self._release(self._stream, out, final=True)
        return out

    def _new_stream(
        self, ssrc: int, seq: int, timestamp: int, arrival: float, out: list[tuple[bytes, int]]
    ) -> _Stream:
        # A new stream (first packet, or a reconnect) starts where the wall clock says,
        # after the audio written so far.
        if self._stream is not None:
            self._release(self._stream, out, final=True)
        offset = 0
        if self._end is not None:
            silence = round((arrival - self._last_arrival) * RATE) - self._last_samples
            offset = self._end + self._shift + min(max(0, silence), self._max_gap)
        self._stream = _Stream(
            ssrc=ssrc,
            highest_seq=seq,
            highest_ts=timestamp,
            origin_ts=timestamp,
            offset=offset,
            next_seq=seq,
        )
        return self._stream

    def _release(self, stream: _Stream, out: list[tuple[bytes, int]], *, final: bool) -> None:
        buffer = stream.buffer
        if not stream.started and buffer:
            first = min(buffer)
            if not final and stream.highest_seq - first < self._window:
                return
            stream.next_seq, stream.started = first, True
        while buffer:
            if stream.next_seq not in buffer:
                first = min(buffer)
                if not final and stream.highest_seq - stream.next_seq < self._window:
                    return
                self.lost += first - stream.next_seq
                stream.next_seq = first
            position, payload = buffer.pop(stream.next_seq)
            stream.next_seq += 1
            self._emit(position, payload, out)

    def _emit(self, position: int, payload: bytes, out: list[tuple[bytes, int]]) -> None:
        samples = opus_packet_samples(payload)
        written = position - self._shift
        if self._end is None:
            self._end = written
        elif written > self._end:
            self._fill(written - self._end, out)
        # Whatever could not be placed exactly (a gap too long to fill, a part of a frame,
        # an overlap) shifts the rest of the stream, so it is not counted again.
        self._shift += written - self._end
        out.append((payload, samples))
        self._toc = payload[0]
        self._last_samples = samples
        self.samples += samples
        self._end += samples

    def _fill(self, gap: int, out: list[tuple[bytes, int]]) -> None:
        assert self._end is not None
        filler, unit = opus_filler(self._toc)
        count = (min(gap, self._max_gap) + unit // 2) // unit  # the nearest whole frames
        out.extend([(filler, unit)] * count)
        self.samples += count * unit
        self._end += count * unit
