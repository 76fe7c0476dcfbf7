"""Server-to-client websocket text frames, encoded without the library's framing.

Every frame the server sends on an open socket is a complete, unmasked text frame
(RFC 6455 section 5.2: FIN + opcode 0x1, payload length in 7, 16 or 64 bits; servers
never mask, section 5.1). websockets frames each message in Python and goes through
its generator of outgoing data; for a fan-out to thousands of sockets that was a
measured share of the delivery time. The library still owns everything else: the
handshake, reading, control frames and the closing handshake. This path is only
used when the connection negotiated no extension (compression off), where a frame
is nothing but header + payload.
"""

from __future__ import annotations

import struct

_FIN_TEXT = 0x81
_LEN16 = struct.Struct("!BBH")
_LEN64 = struct.Struct("!BBQ")


def text_frame(payload: bytes) -> bytes:
    """The bytes of one unmasked, final text frame carrying ``payload``."""
    length = len(payload)
    if length < 126:
        return bytes((_FIN_TEXT, length)) + payload
    if length < 65536:
        return _LEN16.pack(_FIN_TEXT, 126, length) + payload
    return _LEN64.pack(_FIN_TEXT, 127, length) + payload
