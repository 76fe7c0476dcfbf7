"""Recorded calls: the server's own media path (aiortc) and the recording files.

In a recorded call each party's peer connection ends at the server, which forwards
each party's audio to the other and records both legs (so both parties see only the
server's address, with no TURN server at all).

Why it is built this way (measured on a 2-core machine, see bench/README.md): stock
aiortc decodes every received packet and its ``MediaRecorder`` re-encodes, which costs
several times more CPU per call and clips the end of recordings. Here nothing is
decoded or encoded on the hot path: the encoded Opus packets are forwarded as they
are and written to Ogg as they are.

The media path (no database, no wire; the host drives it):

    media.py        RecordedCall: answers both parties, forwards, records; LegResult
    timeline.py     LegTimeline: a leg's RTP packets back on the call's timeline
                    (reordering, loss concealed in place, wraparound, reconnects)
    ogg.py          Ogg/Opus pages and files, written by hand (RFC 3533, RFC 7845)
    aiortc_hook.py  the only code touching aiortc internals: received packets skip
                    the jitter buffer and the decoder; checked at import against the
                    pinned aiortc release (tests/unit/test_aiortc_hook.py)

Around it:

    host.py         the recorded calls whose media this instance carries
    store.py        the files in the shared object store (kernel/objects.py), keys
    links.py        HMAC-signed, expiring download links
    service.py      recordings.* methods, the download on the HTTP port, retention
    models.py       their wire models

RecordedCall writes each leg under the temporary name it is given (``leg_path``) and
never renames: the store does, once the file is complete.
"""
