"""Our text frames decode, with websockets' own parser, to exactly what was sent."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from rtc_server.framing import text_frame


def parse(data: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False, max_size=None)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
        return frame
    raise AssertionError("incomplete frame")


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_lengths_at_every_encoding_boundary(length: int) -> None:
    payload = bytes(n % 251 for n in range(length))
    frame = parse(text_frame(payload))
    assert frame.opcode is Opcode.TEXT and frame.fin and frame.data == payload
    header = 2 if length < 126 else 4 if length < 65536 else 10
    assert len(text_frame(payload)) == header + length
