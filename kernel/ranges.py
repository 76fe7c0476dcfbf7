"""HTTP range requests on stored objects (RFC 9110 §14), as pure functions: which bytes
of an object of a known size a ``GET`` with ``Range`` (and ``If-Range``) asks for.

One range per request: a request for several (``bytes=0-9,20-29``) gets the whole
object, as RFC 9110 §14.2 allows (no ``multipart/byteranges``). A ``Range`` in a unit
other than bytes is ignored (§14.2: MUST); one that is malformed or that starts past
the end is refused with 416 (§14.2 allows refusing an invalid one; §15.5.17).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime

_SPEC = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # exclusive

    @property
    def length(self) -> int:
        return self.end - self.start

    def content_range(self, size: int) -> str:
        """The ``Content-Range`` of a 206 answer (§14.4: last-pos is inclusive)."""
        return f"bytes {self.start}-{self.end - 1}/{size}"


class RangeNotSatisfiable(ValueError):
    """Answer 416 with ``Content-Range: bytes */<size>`` (:func:`unsatisfied`)."""


def unsatisfied(size: int) -> str:
    """The ``Content-Range`` of a 416 answer (§14.4)."""
    return f"bytes */{size}"


def http_date(moment: datetime) -> str:
    """``Last-Modified`` and the like: an IMF-fixdate (§5.6.7)."""
    return format_datetime(moment, usegmt=True)


def requested_range(
    range_header: str | None,
    size: int,
    *,
    if_range: str | None = None,
    etag: str = "",
    modified: datetime | None = None,
) -> ByteRange | None:
    """The bytes a request asks for of an object of ``size`` bytes, whose ETag (its
    value, without quotes) and modification time are ``etag`` and ``modified``.

    None: answer the whole object (200): no ``Range``, a unit not understood, several
    ranges, or an ``If-Range`` that does not match (the object changed since the client
    got its first part, §13.1.5). :class:`RangeNotSatisfiable`: answer 416.
    """
    if not range_header:
        return None
    if if_range is not None and not _if_range_matches(if_range.strip(), etag, modified):
        return None
    unit, _, specs = range_header.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    if "," in specs:
        return None
    match = _SPEC.match(specs)
    if match is None or match.groups() == ("", ""):
        raise RangeNotSatisfiable(f"malformed range: {range_header!r}")
    first, last = match.groups()
    if first == "":  # a suffix: the last N bytes (§14.1.2)
        wanted = int(last)
        if wanted == 0 or size == 0:
            raise RangeNotSatisfiable(f"empty suffix range: {range_header!r}")
        return ByteRange(max(0, size - wanted), size)
    start = int(first)
    if last != "" and int(last) < start:
        raise RangeNotSatisfiable(f"malformed range: {range_header!r}")
    if start >= size:
        raise RangeNotSatisfiable(f"range starts past the end ({size} bytes)")
    end = size if last == "" else min(int(last) + 1, size)
    return ByteRange(start, end)


def _if_range_matches(value: str, etag: str, modified: datetime | None) -> bool:
    """§13.1.5: a strong entity tag equal to the object's, or the exact date it was
    last modified (to the second, as ``Last-Modified`` says it)."""
    if value.startswith(('"', "W/")):
        return bool(etag) and value == f'"{etag}"'  # a weak tag never matches
    if modified is None:
        return False
    try:
        date = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return False
    return date.tzinfo is not None and int(date.timestamp()) == int(modified.timestamp())
