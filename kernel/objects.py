"""The object store every instance shares: recordings and uploads (pictures, proofs,
evidence) live in it, so any instance can serve or process a file another one made.

Two implementations (``storage/objects/``): a local folder, the embedded default (one
machine, or a folder every instance mounts), and S3-compatible object storage (AWS S3,
MinIO, Cloudflare R2 ...). Configured by the ``[objects]`` settings section; features
reach it through the :data:`OBJECTS` port.

The rules every implementation keeps (``tests/integration/test_object_store.py`` runs
one contract suite against each):

- **Whole or absent.** An object is written to a local scratch file first
  (:meth:`ObjectStore.temp_path`) and appears under its key only by :meth:`commit`
  once complete (an atomic rename; a completed S3 upload). A crash leaves at most a
  scratch file, swept by :meth:`sweep_temp`, never a half object under a key.
- **Keys** are ``/``-separated words of ``[A-Za-z0-9_.-]`` (no ``..``, no leading
  ``/``, no word starting with a dot): :func:`check_key`. They are chosen by the
  server, never by a client. A key is never also the folder of other keys (``a/b`` and
  ``a/b/c``): the local store keeps them as files and folders.
- Reads stream (:meth:`read`, with a byte range for HTTP Range requests): nothing
  buffers a whole object in memory.
- **Errors**: FileNotFoundError for an object that is not there (:meth:`read`);
  :class:`ObjectStoreError` (an ``OSError``, with ``retryable``) when the store fails;
  ValueError for a bad key or range. Nothing of a client library escapes.

A feature keeps its objects under a prefix of its own (``recordings/``, ``uploads/``):
:class:`PrefixedStore` is the store seen from there. HTTP Range requests on objects:
:mod:`kernel.ranges`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Protocol

from kernel.feature import PortKey

# The values every store speaks are defined beside the implementations (storage is the
# layer below; it imports nothing of ours) and are these, by these names.
from storage.objects.model import (
    DEFAULT_CONTENT_TYPE,
    ObjectInfo,
    ObjectStoreError,
    StoredObject,
    check_key,
)

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "OBJECTS",
    "ObjectInfo",
    "ObjectStore",
    "ObjectStoreError",
    "PrefixedStore",
    "StoredObject",
    "check_key",
]


class ObjectStore(Protocol):
    def temp_path(self, key: str) -> Path:
        """A new local scratch path to write the object of ``key`` to (not visible).
        Also a good place for a local copy of an object (:meth:`fetch`): what a crash
        leaves there is swept."""
        ...

    async def commit(self, temp: Path, key: str, *, content_type: str) -> StoredObject:
        """Make the complete file at ``temp`` the object of ``key`` (replacing one that
        was there; a failed commit leaves that one as it was). ``temp`` is consumed: it
        is gone afterwards, success or not."""
        ...

    async def stat(self, key: str) -> ObjectInfo | None:
        """The object's size, type and time; None if there is none."""
        ...

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncGenerator[bytes, None]:
        """The object's bytes ``[start, end)`` (``end`` None: to the end; past the end:
        as many as there are), in chunks of at most a few hundred KiB.
        FileNotFoundError (raised by the first ``__anext__``) if there is no object.
        Close it (``contextlib.aclosing``) when stopping early."""
        ...

    async def fetch(self, key: str, dest: Path) -> bool:
        """Copy the object to the local file ``dest`` (for tools that need a path, e.g.
        mixing a recording); False if there is no object."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove the object; False if it was not there."""
        ...

    async def sweep_temp(self, older_than: float) -> int:
        """Remove scratch files (and unfinished uploads) older than ``older_than``
        seconds; how many. (The core runs it hourly: job ``objects.sweep``.)"""
        ...

    async def close(self) -> None:
        """Release connections (at stop)."""
        ...


class PrefixedStore:
    """``store`` seen from under ``prefix`` (``"recordings/"``): key ``k`` here is key
    ``prefix + k`` there; keys in what it answers are its own (without the prefix)."""

    def __init__(self, store: ObjectStore, prefix: str) -> None:
        if not prefix.endswith("/"):
            raise ValueError(f"prefix {prefix!r}: must end with '/'")
        check_key(prefix.rstrip("/"))
        self.store = store
        self.prefix = prefix

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def temp_path(self, key: str) -> Path:
        return self.store.temp_path(self._key(key))

    async def commit(self, temp: Path, key: str, *, content_type: str) -> StoredObject:
        try:
            full = self._key(key)
        except ValueError:
            temp.unlink(missing_ok=True)  # consumed, as any commit
            raise
        stored = await self.store.commit(temp, full, content_type=content_type)
        return StoredObject(key, stored.bytes, stored.sha256)

    async def stat(self, key: str) -> ObjectInfo | None:
        info = await self.store.stat(self._key(key))
        if info is None:
            return None
        return ObjectInfo(key, info.bytes, info.content_type, info.modified, info.etag)

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncGenerator[bytes, None]:
        return self.store.read(self._key(key), start, end)

    async def fetch(self, key: str, dest: Path) -> bool:
        return await self.store.fetch(self._key(key), dest)

    async def delete(self, key: str) -> bool:
        return await self.store.delete(self._key(key))

    async def sweep_temp(self, older_than: float) -> int:
        return await self.store.sweep_temp(older_than)

    async def close(self) -> None:
        """Nothing: the store is the core's, closed by it."""


#: The store of this server, provided by the core from the ``[objects]`` settings.
OBJECTS: PortKey[ObjectStore] = PortKey("objects")
