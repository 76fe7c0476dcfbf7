"""What every object store speaks: keys, what was stored, what is there, and the one
error a store raises (the interface itself is :mod:`kernel.objects`).

.. code-block:: text

    OSError
    ├── FileNotFoundError        reading an object that is not there
    └── ObjectStoreError         the store failed: unreachable, refused, out of space;
                                 ``retryable`` if the same call may succeed later

No exception of a store's client library (botocore, aiohttp) escapes a store.
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass
from datetime import datetime

__all__ = ["DEFAULT_CONTENT_TYPE", "ObjectInfo", "ObjectStoreError", "StoredObject", "check_key"]

_KEY = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*(/[A-Za-z0-9_-][A-Za-z0-9_.-]*)*$")

# The type of an object whose type was never said (files of a store's earlier layout).
DEFAULT_CONTENT_TYPE = "application/octet-stream"


def check_key(key: str) -> str:
    """``key`` if it is a valid object key (ValueError if not): ``/``-separated words of
    ``[A-Za-z0-9_.-]``, none starting with a dot (so ``..`` and the stores' own hidden
    names never are keys), at most 512 characters."""
    if len(key) > 512 or not _KEY.match(key) or ".." in key:
        raise ValueError(f"not an object key: {key!r}")
    return key


@dataclass(frozen=True, slots=True)
class StoredObject:
    """What :meth:`kernel.objects.ObjectStore.commit` stored."""

    key: str
    bytes: int
    sha256: str  # hex digest of the content


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    bytes: int
    content_type: str
    modified: datetime
    # An opaque validator that changes whenever the object is replaced (an HTTP ETag's
    # value, without quotes); "" if the store has none.
    etag: str = ""


class ObjectStoreError(OSError):
    """The store could not do what was asked. An ``OSError``, so code written for a
    failing disk (a full one, an I/O error) handles a failing store alike. ``code``: the
    store's own name of the error when it gave one (S3's ``NoSuchBucket`` ...)."""

    def __init__(self, message: str, *, retryable: bool = True, code: str = "") -> None:
        super().__init__(errno.EIO, message)
        self.retryable = retryable
        self.code = code

    def __str__(self) -> str:
        return str(self.strerror)
