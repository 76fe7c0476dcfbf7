"""The local scratch files of a store: where an object is written before it is
committed (:meth:`kernel.objects.ObjectStore.temp_path`), and their removal once a
crash left them behind."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from .model import check_key

SUFFIX = ".partial"

# Objects are private: the server's user reads and writes them, its group (a backup
# agent, an operator) may read them, nobody else.
FILE_MODE = 0o640
DIR_MODE = 0o750


def temp_name(folder: Path, key: str) -> Path:
    """A new scratch path in ``folder`` for the object of ``key`` (its name says which
    object, for whoever looks at leftovers)."""
    flat = check_key(key).replace("/", "_")
    return folder / f"{flat[-200:]}.{uuid.uuid4().hex[:12]}{SUFFIX}"


def sweep(folder: Path, older_than: float) -> int:
    """Remove the scratch files in ``folder`` last written more than ``older_than``
    seconds ago; how many."""
    cutoff = time.time() - older_than
    removed = 0
    for path in folder.glob(f"*{SUFFIX}"):
        try:
            if path.lstat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            pass  # another instance sharing the folder took it
    return removed


def make_dirs(path: Path, mode: int = DIR_MODE) -> None:
    """``path`` and its missing parents, each made with ``mode`` (not the umask's)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=mode)
        except FileExistsError:
            continue  # made meanwhile by another task or instance
        os.chmod(directory, mode)  # mkdir's mode is masked by the umask


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
