"""Where recordings live: in the object store under recordings/, keyed by day and call;
recordings.dir and the former default folder of before the object store."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from kernel.objects import ObjectStoreError, PrefixedStore, StoredObject
from recordings.store import (
    COMMIT_RETRY_DELAYS,
    adopt_former_folder,
    commit_leg,
    file_key,
    recording_store,
)
from storage.objects import LocalStore


def test_a_file_key_is_the_utc_day_then_the_call() -> None:
    late_in_kolkata = datetime(2026, 11, 27, 1, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert file_key(late_in_kolkata, 7, "caller") == "2026/11/26/7/caller.ogg"
    assert file_key(datetime(2026, 1, 2, tzinfo=UTC), 8, "mixed") == "2026/01/02/8/mixed.ogg"


async def test_recordings_are_under_their_prefix_of_the_shared_store(tmp_path: Path) -> None:
    objects = LocalStore(tmp_path / "objects")
    store = recording_store(objects, own_dir=None)
    temp = store.temp_path("2026/11/26/7/caller.ogg")
    temp.write_bytes(b"OggS")
    stored = await store.commit(temp, "2026/11/26/7/caller.ogg", content_type="audio/ogg")
    assert stored.key == "2026/11/26/7/caller.ogg"  # as the rows keep it
    assert (tmp_path / "objects/recordings/2026/11/26/7/caller.ogg").read_bytes() == b"OggS"


def test_recordings_dir_keeps_its_folder_with_the_local_backend_only(tmp_path: Path) -> None:
    own = recording_store(LocalStore(tmp_path / "objects"), own_dir=tmp_path / "recordings")
    assert isinstance(own, LocalStore) and own.root == tmp_path / "recordings"
    not_local = PrefixedStore(LocalStore(tmp_path / "objects"), "elsewhere/")
    with pytest.raises(ValueError, match="recordings.dir is for the local object store"):
        recording_store(not_local, own_dir=tmp_path / "recordings")


def test_the_former_default_folder_is_moved_into_the_local_store(tmp_path: Path) -> None:
    former = tmp_path / "recordings"
    (former / "2026/11/26/7").mkdir(parents=True)
    (former / "2026/11/26/7/caller.ogg").write_bytes(b"OggS")
    (former / ".tmp").mkdir()
    (former / ".tmp/x.partial").write_bytes(b"half")
    objects = LocalStore(tmp_path / "objects")
    adopt_former_folder(former, objects)
    assert not former.exists()
    moved = tmp_path / "objects/recordings"
    assert (moved / "2026/11/26/7/caller.ogg").read_bytes() == b"OggS"
    assert not (moved / ".tmp").exists()  # a crash's leftovers are not kept
    adopt_former_folder(former, objects)  # nothing left to move: nothing happens


def test_a_former_folder_that_cannot_be_moved_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    former = tmp_path / "recordings"
    (former / "2026").mkdir(parents=True)
    objects = LocalStore(tmp_path / "objects")
    (tmp_path / "objects/recordings").mkdir()  # already there: never merged by hand
    with caplog.at_level(logging.WARNING, logger="rtc.recordings"):
        adopt_former_folder(former, objects)
        adopt_former_folder(former, PrefixedStore(objects, "x/"))  # the bucket's case
    assert (former / "2026").is_dir()
    assert len([r for r in caplog.records if "before the object store" in r.getMessage()]) == 2
    caplog.clear()
    adopt_former_folder(tmp_path / "absent", objects)
    assert not caplog.records


class FlakyStore:
    """A local store whose first ``failures`` commits fail as an unreachable bucket does
    (each consuming its temp file, as every store's commit does)."""

    def __init__(self, root: Path, failures: int, *, retryable: bool = True) -> None:
        self.store = LocalStore(root)
        self.failures = failures
        self.retryable = retryable
        self.tries = 0

    async def commit(self, temp: Path, key: str, *, content_type: str) -> StoredObject:
        self.tries += 1
        if self.tries <= self.failures:
            temp.unlink()
            raise ObjectStoreError("the bucket is away", retryable=self.retryable)
        return await self.store.commit(temp, key, content_type=content_type)


def leg_file(tmp_path: Path) -> Path:
    path = tmp_path / "scratch" / "caller.ogg.partial"
    path.parent.mkdir()
    path.write_bytes(b"OggS leg")
    return path


async def test_a_leg_waits_out_a_store_that_is_away_for_a_while(tmp_path: Path) -> None:
    flaky = FlakyStore(tmp_path / "objects", failures=2)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    leg = leg_file(tmp_path)
    stored = await commit_leg(flaky, leg, "2026/11/26/7/caller.ogg", sleep=sleep)  # type: ignore[arg-type]
    assert stored.bytes == len(b"OggS leg") and flaky.tries == 3
    assert slept == list(COMMIT_RETRY_DELAYS[:2])
    assert (tmp_path / "objects/2026/11/26/7/caller.ogg").read_bytes() == b"OggS leg"
    assert list(leg.parent.iterdir()) == []  # the leg and every try's link are gone


@pytest.mark.parametrize(("failures", "retryable", "tries"), [(99, True, 6), (1, False, 1)])
async def test_a_leg_the_store_keeps_refusing_fails_and_leaves_nothing(
    tmp_path: Path, failures: int, retryable: bool, tries: int
) -> None:
    flaky = FlakyStore(tmp_path / "objects", failures=failures, retryable=retryable)

    async def sleep(seconds: float) -> None:
        pass

    leg = leg_file(tmp_path)
    with pytest.raises(ObjectStoreError):
        await commit_leg(flaky, leg, "2026/11/26/7/caller.ogg", sleep=sleep)  # type: ignore[arg-type]
    assert flaky.tries == tries
    assert list(leg.parent.iterdir()) == []
