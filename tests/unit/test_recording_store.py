"""The local recording store: files appear under their key only once complete."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from recordings.store import LocalStore, check_key


async def test_a_committed_file_appears_under_its_key_with_its_checksum(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    temp = store.temp_path("2026/11/26/7/caller.ogg")
    assert store.local_path("2026/11/26/7/caller.ogg") is None
    temp.write_bytes(b"OggS" + bytes(1000))
    # Not visible under its key while it is being written.
    assert store.local_path("2026/11/26/7/caller.ogg") is None
    stored = await store.commit(temp, "2026/11/26/7/caller.ogg")
    assert stored.bytes == 1004
    assert stored.sha256 == hashlib.sha256(b"OggS" + bytes(1000)).hexdigest()
    path = store.local_path("2026/11/26/7/caller.ogg")
    assert path is not None and path.read_bytes().startswith(b"OggS")
    assert not temp.exists()
    assert await store.delete("2026/11/26/7/caller.ogg")
    assert not await store.delete("2026/11/26/7/caller.ogg")
    assert store.local_path("2026/11/26/7/caller.ogg") is None


async def test_recordings_are_readable_by_owner_and_group_only(tmp_path: Path) -> None:
    root = tmp_path / "recordings"
    store = LocalStore(root)
    temp = store.temp_path("2026/11/26/7/mix.ogg")
    temp.write_bytes(b"OggS")  # as PyAV writes it: with the process umask
    await store.commit(temp, "2026/11/26/7/mix.ogg")
    path = store.local_path("2026/11/26/7/mix.ogg")
    assert path is not None and path.stat().st_mode & 0o777 == 0o640
    for directory in (root, root / ".tmp", root / "2026", root / "2026/11/26/7"):
        assert directory.stat().st_mode & 0o777 == 0o750, directory


async def test_leftover_temporary_files_are_swept_by_age(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    old, new = store.temp_path("a/caller.ogg"), store.temp_path("a/callee.ogg")
    old.write_bytes(b"x")
    new.write_bytes(b"y")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert await store.sweep_temp(older_than=600) == 1
    assert not old.exists() and new.exists()


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs/caller.ogg", "a/../b.ogg", "a//b", ""])
def test_keys_cannot_leave_the_store(key: str) -> None:
    with pytest.raises(ValueError, match="not a recording key"):
        check_key(key)
