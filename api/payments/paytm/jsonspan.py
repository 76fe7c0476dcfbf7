"""The exact text of a top-level value in a JSON object, found without re-serializing.

Paytm signs the ``body`` of every JSON request and response as the bytes that went on
the wire (``head.signature`` over ``body``; https://developer.paytm.com/docs/checksum/).
Serializing the parsed body again would change whitespace, key order or escapes and break
the signature, so both sides locate the body's text in the document instead:
:func:`value_span` walks the top-level object with :meth:`json.JSONDecoder.raw_decode`
and returns where each value starts and ends.

A document whose top level names a key twice is refused: ``json.loads`` keeps the last
value while a verifier might check the first, and that difference is enough to smuggle
an unsigned body past a signature.
"""

from __future__ import annotations

import json
import re

__all__ = ["top_level_spans", "value_span"]

_DECODER = json.JSONDecoder()
# RFC 8259 section 2: the only insignificant whitespace.
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def top_level_spans(text: str) -> dict[str, tuple[int, int]]:
    """``{key: (start, end)}`` for every member of the JSON object ``text``, so that
    ``text[start:end]`` is that member's value exactly as written.

    Raises ``ValueError`` (``json.JSONDecodeError`` where the JSON itself is malformed)
    if ``text`` is not one JSON object, or names a key twice.
    """
    spans: dict[str, tuple[int, int]] = {}
    index = _skip(text, 0)
    if not text.startswith("{", index):
        raise ValueError("expected a JSON object")
    index = _skip(text, index + 1)
    if text.startswith("}", index):
        return _expect_end(text, index + 1, spans)
    while True:
        key, index = _DECODER.raw_decode(text, index)
        if not isinstance(key, str):
            raise ValueError(f"expected an object key at {index}")
        index = _skip(text, index)
        if not text.startswith(":", index):
            raise ValueError(f"expected ':' at {index}")
        start = _skip(text, index + 1)
        _, end = _DECODER.raw_decode(text, start)
        if key in spans:
            raise ValueError(f"duplicate key {key!r}")
        spans[key] = (start, end)
        index = _skip(text, end)
        if text.startswith(",", index):
            index = _skip(text, index + 1)
        elif text.startswith("}", index):
            return _expect_end(text, index + 1, spans)
        else:
            raise ValueError(f"expected ',' or '}}' at {index}")


def value_span(text: str, key: str) -> tuple[int, int]:
    """Where the value of the top-level ``key`` of the JSON object ``text`` is written.

    Raises ``KeyError`` if the object has no such key, ``ValueError`` as
    :func:`top_level_spans` does.
    """
    return top_level_spans(text)[key]


def _skip(text: str, index: int) -> int:
    match = _WHITESPACE.match(text, index)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _expect_end(
    text: str, index: int, spans: dict[str, tuple[int, int]]
) -> dict[str, tuple[int, int]]:
    if _skip(text, index) != len(text):
        raise ValueError(f"extra data after the object at {index}")
    return spans
