"""Where recording files live: in the object store every instance shares
(:mod:`kernel.objects`), under the prefix ``recordings/``, so any instance can mix and
serve a recording another one made.

A leg is written to a local scratch file while its call runs (the media path needs a
file), then committed to the store at hang-up; it appears under its key only once
complete (whole or absent, the store's rule). The rows keep each file's key within
the prefix (``2026/11/26/7/caller.ogg``).

``recordings.dir`` (the folder of recordings before the object store) still works
with the local backend: recordings then stay in that folder, as they were. Recordings
in the former default folder, ``<data_dir>/recordings``, are moved into the local
store at start (one rename).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from kernel.objects import ObjectStore, ObjectStoreError, PrefixedStore, StoredObject
from storage.objects import LocalStore

log = logging.getLogger("rtc.recordings")

PREFIX = "recordings/"
CONTENT_TYPE = "audio/ogg"
# Seconds between the tries of a leg's commit while the store is away (about 2 min).
COMMIT_RETRY_DELAYS = (1.0, 5.0, 15.0, 30.0, 60.0)


def file_key(started_at: datetime, call_id: int, name: str) -> str:
    """The key of a recording's file ``name`` (a leg, or ``mixed``): by the UTC day the
    recording started, then the call. Derived, not only stored: retention finds the
    files of a recording whose rows were never written (see ``enforce_retention``)."""
    return f"{started_at.astimezone(UTC):%Y/%m/%d}/{call_id}/{name}.ogg"


def recording_store(objects: ObjectStore, *, own_dir: Path | None) -> ObjectStore:
    """The store recordings use: ``objects`` under ``recordings/``; or, with
    ``recordings.dir`` set (``own_dir``), a local store in that folder (only with the
    local backend: ValueError otherwise)."""
    if own_dir is None:
        return PrefixedStore(objects, PREFIX)
    if not isinstance(objects, LocalStore):
        raise ValueError(
            "recordings.dir is for the local object store: with objects.backend"
            ' "s3" recordings go to the bucket (under recordings/). Unset it, and copy'
            " the files there (docs/operations.md, Recorded calls)"
        )
    return LocalStore(own_dir)


def adopt_former_folder(former: Path, objects: ObjectStore) -> None:
    """Recordings kept in ``former`` (``<data_dir>/recordings``, before the object store)
    moved into the local store by one rename; with S3 (or another filesystem), a
    warning saying how to move them."""
    if not former.is_dir() or not any(former.iterdir()):
        return
    if isinstance(objects, LocalStore):
        target = objects.root / PREFIX.rstrip("/")
        if not target.exists():
            try:
                os.rename(former, target)
            except FileNotFoundError:
                return  # another instance sharing the folder moved it
            except OSError as exc:
                log.warning(
                    "recordings of %s not moved to %s (%s): move them by hand with the"
                    " server stopped (docs/operations.md, Recorded calls)",
                    former,
                    target,
                    exc.strerror,
                )
                return
            shutil.rmtree(target / ".tmp", ignore_errors=True)  # a crash's leftovers
            log.info("recordings moved into the object store", extra={"to": str(target)})
            return
    log.warning(
        "recordings from before the object store are in %s: they cannot be downloaded"
        " or deleted by retention until moved into it (docs/operations.md, Recorded calls)",
        former,
    )


async def commit_leg(
    store: ObjectStore,
    path: Path,
    key: str,
    *,
    delays: Sequence[float] = COMMIT_RETRY_DELAYS,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> StoredObject:
    """Commit the leg written at ``path``, trying again after each of ``delays`` while
    the store answers a retryable failure (a bucket away for a minute must not cost a
    call its audio). Each try commits a hard link of the file, which the store consumes,
    so a failed try leaves the leg in place; ``path`` is gone afterwards either way."""
    try:
        for attempt, delay in enumerate((*delays, None), start=1):
            attempt_path = path.with_name(f"{path.name}.{attempt}")
            os.link(path, attempt_path)
            try:
                return await store.commit(attempt_path, key, content_type=CONTENT_TYPE)
            except ObjectStoreError as failed:
                if not failed.retryable or delay is None:
                    raise
                log.warning(
                    "recording leg not stored yet; trying again",
                    extra={"key": key, "attempt": attempt, "error": str(failed)},
                )
            finally:
                attempt_path.unlink(missing_ok=True)
            await sleep(delay)
        raise AssertionError("unreachable")
    finally:
        path.unlink(missing_ok=True)
