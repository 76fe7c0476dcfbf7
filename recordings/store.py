"""Where recording files live: the :class:`RecordingStore` interface and the local
folder implementation (the embedded default).

A file is written under a temporary name (:meth:`RecordingStore.temp_path`) and only
becomes visible under its key once complete (:meth:`RecordingStore.commit`: fsync,
then an atomic rename), so a crash never leaves a half file that looks complete;
leftover temporary files are removed by :meth:`RecordingStore.sweep_temp`.

An object store (S3 and the like) would implement the same interface: write the
temporary file locally, upload it in ``commit`` (the upload is the atomic step), and
return a presigned URL from ``download_url`` instead of a local path.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

_KEY = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_.-]+)*$")
_TEMP_SUFFIX = ".partial"


def file_key(started_at: datetime, call_id: int, name: str) -> str:
    """The key of a recording's file ``name`` (a leg, or ``mixed``): by the UTC day the
    recording started, then the call. Derived, not only stored: retention finds the
    files of a recording whose rows were never written (see ``enforce_retention``)."""
    return f"{started_at.astimezone(UTC):%Y/%m/%d}/{call_id}/{name}.ogg"


@dataclass(frozen=True, slots=True)
class StoredFile:
    key: str
    bytes: int
    sha256: str


class RecordingStore(Protocol):
    def temp_path(self, key: str) -> Path:
        """A new local path to write the file of ``key`` to (not visible yet)."""

    async def commit(self, temp: Path, key: str) -> StoredFile:
        """Make the complete file at ``temp`` the file of ``key``."""

    def local_path(self, key: str) -> Path | None:
        """The file of ``key`` on this machine (None if it is not here)."""

    async def delete(self, key: str) -> bool:
        """Remove the file of ``key``; False if it was not there."""

    async def sweep_temp(self, older_than: float) -> int:
        """Remove temporary files older than ``older_than`` seconds; how many."""


def check_key(key: str) -> str:
    if not _KEY.match(key) or ".." in key:
        raise ValueError(f"not a recording key: {key!r}")
    return key


# Recordings are private: the server's user reads and writes them, its group (a backup
# agent, an operator) may read them, nobody else.
FILE_MODE = 0o640
DIR_MODE = 0o750


class LocalStore:
    """Files under one folder: ``<root>/<key>``, temporary ones in ``<root>/.tmp``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / ".tmp"
        _make_dirs(self._tmp)

    def temp_path(self, key: str) -> Path:
        flat = check_key(key).replace("/", "_")
        return self._tmp / f"{flat}.{uuid.uuid4().hex[:8]}{_TEMP_SUFFIX}"

    async def commit(self, temp: Path, key: str) -> StoredFile:
        return await asyncio.to_thread(self._commit, temp, check_key(key))

    def _commit(self, temp: Path, key: str) -> StoredFile:
        digest = hashlib.sha256()
        size = 0
        with open(temp, "rb+") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
            os.fchmod(f.fileno(), FILE_MODE)  # written by PyAV with the process umask
            os.fsync(f.fileno())
        final = self.root / key
        _make_dirs(final.parent)
        os.replace(temp, final)
        _fsync_dir(final.parent)
        return StoredFile(key, size, digest.hexdigest())

    def local_path(self, key: str) -> Path | None:
        path = self.root / check_key(key)
        return path if path.is_file() else None

    async def delete(self, key: str) -> bool:
        path = self.root / check_key(key)
        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            return False
        return True

    async def sweep_temp(self, older_than: float) -> int:
        return await asyncio.to_thread(self._sweep_temp, older_than)

    def _sweep_temp(self, older_than: float) -> int:
        cutoff = time.time() - older_than
        removed = 0
        for path in self._tmp.glob(f"*{_TEMP_SUFFIX}"):
            try:
                if path.lstat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed


def _make_dirs(path: Path) -> None:
    """``path`` and its missing parents, each made with DIR_MODE (not the umask's)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(mode=DIR_MODE, exist_ok=True)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
