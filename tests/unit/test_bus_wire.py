"""Bus messages on the wire: what goes in comes out, and junk is refused clearly."""

from __future__ import annotations

import pytest

from kernel.bus import EventBatch, SessionsRevoked, Signal
from rtc_server.scaleout import wire


def test_an_event_round_trips_with_its_payload_untouched() -> None:
    payload = b'{"a":"line\\nbreak","b":[1,2],"c":"\xc3\xa9"}'
    batch = EventBatch("booking.offered", payload, {3: 10, 1: 2}, 1_790_000_000.125)
    decoded, sender = wire.decode(wire.encode(batch, "me"))
    assert decoded == batch and sender is None


def test_broadcasts_carry_their_sender() -> None:
    for message in (SessionsRevoked(4, ("s1", "s2"), "logout"), Signal("t", {"v": [1]})):
        assert wire.decode(wire.encode(message, "inst-1")) == (message, "inst-1")


@pytest.mark.parametrize(
    "junk",
    [b"", b"Z{}", b"E{}\n", b"E{no newline", b'E{"e":"x","t":1,"u":[1],"s":[]}\n{}', b"R[]", b"S{"],
)
def test_junk_is_refused_with_a_wire_error(junk: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.decode(junk)
