"""The object store as a local folder: the embedded default (one machine, or a folder
every instance mounts).

An object of key ``a/b/c.ogg`` is the file ``<root>/a/b/c.ogg``; its content type is
kept beside it in ``<root>/a/b/.c.ogg.type`` (no key has a word starting with a dot,
so these never collide with an object); scratch files are in ``<root>/.tmp``.

Whole or absent: :meth:`LocalStore.commit` hashes and fsyncs the scratch file, writes
the type beside the final name, then renames the file into place (atomic on one
filesystem) and fsyncs the folder. A crash leaves at most a scratch file (swept by
age) or a type file without its object (never read).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import shutil
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from pathlib import Path

from . import scratch
from .model import DEFAULT_CONTENT_TYPE, ObjectInfo, StoredObject, check_key

_TYPE_SUFFIX = ".type"
_CHUNK = 256 * 1024  # bytes per read: what a download holds in memory at a time


class LocalStore:
    """Files under one folder (see the module's docstring)."""

    def __init__(
        self, root: Path, *, file_mode: int = scratch.FILE_MODE, dir_mode: int = scratch.DIR_MODE
    ) -> None:
        self.root = root
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self._tmp = root / ".tmp"
        scratch.make_dirs(self._tmp, dir_mode)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def temp_path(self, key: str) -> Path:
        return scratch.temp_name(self._tmp, key)

    async def commit(self, temp: Path, key: str, *, content_type: str) -> StoredObject:
        try:
            final = self._path(key)
            return await asyncio.to_thread(self._commit, temp, final, key, content_type)
        finally:
            temp.unlink(missing_ok=True)  # consumed, success or not

    def _commit(self, temp: Path, final: Path, key: str, content_type: str) -> StoredObject:
        digest = hashlib.sha256()
        size = 0
        with open(temp, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
            os.fchmod(f.fileno(), self.file_mode)  # written with the process umask
            os.fsync(f.fileno())
        # Whoever removes the last object of a folder removes the folder (delete): one
        # that vanished between making it and renaming into it is made again.
        for attempt in range(3):
            scratch.make_dirs(final.parent, self.dir_mode)
            try:
                self._write_type(final, content_type)
                _replace(temp, final, self._tmp, self.file_mode)
                break
            except FileNotFoundError:
                if attempt == 2 or not temp.exists():
                    raise
        scratch.fsync_dir(final.parent)
        return StoredObject(key, size, digest.hexdigest())

    def _write_type(self, final: Path, content_type: str) -> None:
        path = _type_path(final)
        temp = scratch.temp_name(self._tmp, "type")
        temp.write_text(content_type, encoding="utf-8")
        os.chmod(temp, self.file_mode)
        os.replace(temp, path)

    async def stat(self, key: str) -> ObjectInfo | None:
        return await asyncio.to_thread(self._stat, key, self._path(key))

    def _stat(self, key: str, path: Path) -> ObjectInfo | None:
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not path.is_file():
            return None
        try:
            content_type = _type_path(path).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            content_type = DEFAULT_CONTENT_TYPE
        return ObjectInfo(
            key=key,
            bytes=st.st_size,
            content_type=content_type or DEFAULT_CONTENT_TYPE,
            modified=datetime.fromtimestamp(st.st_mtime, UTC),
            etag=f"{st.st_mtime_ns:x}-{st.st_size:x}",  # as aiohttp's FileResponse
        )

    async def read(
        self, key: str, start: int = 0, end: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        _check_range(start, end)
        path = self._path(key)
        try:
            f = open(path, "rb")  # quick: the reads go to a thread
        except (IsADirectoryError, NotADirectoryError):
            raise FileNotFoundError(errno.ENOENT, "no such object", key) from None
        try:
            f.seek(start)
            left = None if end is None else end - start
            while left is None or left > 0:
                chunk = await asyncio.to_thread(
                    f.read, _CHUNK if left is None else min(_CHUNK, left)
                )
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk
        finally:
            f.close()

    async def fetch(self, key: str, dest: Path) -> bool:
        path = self._path(key)
        try:
            await asyncio.to_thread(shutil.copyfile, path, dest)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return False
        return True

    async def delete(self, key: str) -> bool:
        return await asyncio.to_thread(self._delete, self._path(key))

    def _delete(self, path: Path) -> bool:
        try:
            path.unlink()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return False
        _type_path(path).unlink(missing_ok=True)
        # Empty folders go too (a recording's day and call folders, years later).
        folder = path.parent
        while folder != self.root:
            try:
                folder.rmdir()
            except OSError:  # not empty (or already gone)
                break
            folder = folder.parent
        return True

    async def sweep_temp(self, older_than: float) -> int:
        return await asyncio.to_thread(scratch.sweep, self._tmp, older_than)

    async def close(self) -> None:
        pass


def _type_path(final: Path) -> Path:
    return final.with_name(f".{final.name}{_TYPE_SUFFIX}")


def _replace(temp: Path, final: Path, tmp: Path, mode: int) -> None:
    """Rename ``temp`` to ``final``; a temp on another filesystem is copied next to
    ``final``'s folder first (the rename stays the one step that makes it visible)."""
    try:
        os.replace(temp, final)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        near = scratch.temp_name(tmp, "copy")
        shutil.copyfile(temp, near)
        with open(near, "rb") as f:
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(near, final)


def _check_range(start: int, end: int | None) -> None:
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"not a byte range: [{start}, {end})")
