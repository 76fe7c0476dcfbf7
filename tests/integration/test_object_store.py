"""The object store contract (kernel/objects.py), run against each implementation: the
local folder, S3 (a real S3-protocol server: moto's, started by the run) and a feature's
view under a prefix (PrefixedStore on the local folder).

The first part holds for every store. The second is what only S3 has: multipart uploads
aborted on failure and on cancellation, unfinished uploads of a crash swept, the bucket
checked at start. The last part is the core's: the [objects] section builds the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
import tracemalloc
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.exceptions import EndpointConnectionError

from kernel.objects import ObjectStore, ObjectStoreError, PrefixedStore, check_key
from rtc_server.config import ConfigError
from rtc_server.objects import open_object_store
from rtc_server.scaleout.local_redis import free_port
from storage.objects import LocalStore
from storage.objects.s3 import MIN_PART_SIZE, S3Config, S3Store
from tests.s3_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, s3_client
from tests.servers import settings_for

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

KEY = "2026/11/26/7/caller.ogg"
MiB = 1024 * 1024


def s3_config(endpoint: str, bucket: str, prefix: str = "", **more: Any) -> S3Config:
    return S3Config(
        bucket=bucket,
        prefix=prefix,
        endpoint_url=endpoint,
        region=REGION,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
        addressing_style="path",
        **more,
    )


@pytest.fixture(params=["local", "s3", "prefixed"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    if request.param == "local":
        yield LocalStore(tmp_path / "objects")
    elif request.param == "prefixed":
        yield PrefixedStore(LocalStore(tmp_path / "objects"), "uploads/")
    else:
        s3 = await open_s3(
            request.getfixturevalue("s3_endpoint"),
            request.getfixturevalue("s3_bucket"),
            request.getfixturevalue("s3_prefix"),
            tmp_path,
        )
        try:
            yield s3
        finally:
            await s3.close()


async def open_s3(endpoint: str, bucket: str, prefix: str, tmp_path: Path) -> S3Store:
    # The smallest parts S3 takes, so that a large object here is a few parts.
    return await S3Store.open(
        s3_config(endpoint, bucket, prefix), tmp_path / "scratch", part_size=MIN_PART_SIZE
    )


async def put(store: ObjectStore, key: str, data: bytes, content_type: str = "audio/ogg") -> Any:
    temp = store.temp_path(key)
    temp.write_bytes(data)
    return await store.commit(temp, key, content_type=content_type)


async def read_all(store: ObjectStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.read(key, start, end)])


def pattern(size: int) -> bytes:
    """``size`` bytes that differ along the object (a misplaced chunk shows)."""
    block = hashlib.sha256(str(size).encode()).digest() * 2048  # 64 KiB
    whole, rest = divmod(size, len(block))
    return b"".join(bytes([i % 251]) + block[1:] for i in range(whole)) + block[:rest]


# --- Every store ------------------------------------------------------------------------


async def test_an_object_appears_only_when_committed_whole_with_its_checksum_and_type(
    store: ObjectStore,
) -> None:
    data = b"OggS" + pattern(300_000)
    temp = store.temp_path(KEY)
    temp.write_bytes(data)
    # Written, not committed: nothing under the key yet.
    assert await store.stat(KEY) is None
    before = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    stored = await store.commit(temp, KEY, content_type="audio/ogg")
    assert (stored.key, stored.bytes) == (KEY, len(data))
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert not temp.exists()  # consumed
    info = await store.stat(KEY)
    assert info is not None
    assert (info.key, info.bytes, info.content_type) == (KEY, len(data), "audio/ogg")
    assert before <= info.modified <= datetime.now(UTC) + timedelta(seconds=1)
    assert info.etag
    assert await read_all(store, KEY) == data


async def test_byte_ranges_read_what_they_name(store: ObjectStore) -> None:
    data = pattern(1_000_000)
    await put(store, KEY, data)
    assert await read_all(store, KEY, 0, 10) == data[:10]
    assert await read_all(store, KEY, 10) == data[10:]
    assert await read_all(store, KEY, 999_990, 1_000_000) == data[-10:]
    assert await read_all(store, KEY, 999_995, 2_000_000) == data[-5:]  # past the end
    assert await read_all(store, KEY, 1_000_000) == b""  # starts at the end
    assert await read_all(store, KEY, 5, 5) == b""
    with pytest.raises(ValueError, match="byte range"):
        await read_all(store, KEY, 10, 5)
    with pytest.raises(ValueError, match="byte range"):
        await read_all(store, KEY, -1)
    with pytest.raises(FileNotFoundError):
        await read_all(store, "2026/11/26/7/callee.ogg")


async def test_an_empty_object_is_an_object(store: ObjectStore) -> None:
    await put(store, KEY, b"")
    info = await store.stat(KEY)
    assert info is not None and info.bytes == 0
    assert await read_all(store, KEY) == b""


async def test_fetch_copies_an_object_to_a_local_file(store: ObjectStore, tmp_path: Path) -> None:
    data = pattern(200_000)
    await put(store, KEY, data)
    dest = tmp_path / "copy.ogg"
    assert await store.fetch(KEY, dest)
    assert dest.read_bytes() == data
    missing = tmp_path / "missing.ogg"
    assert not await store.fetch("2026/11/26/7/callee.ogg", missing)
    assert not missing.exists()


async def test_a_commit_replaces_and_delete_removes(store: ObjectStore) -> None:
    await put(store, KEY, b"first version", "audio/ogg")
    first = await store.stat(KEY)
    await put(store, KEY, b"the second, longer version", "application/json")
    second = await store.stat(KEY)
    assert first is not None and second is not None
    assert (second.bytes, second.content_type) == (26, "application/json")
    assert second.etag != first.etag
    assert await read_all(store, KEY) == b"the second, longer version"
    assert await store.delete(KEY)
    assert not await store.delete(KEY)
    assert await store.stat(KEY) is None
    with pytest.raises(FileNotFoundError):
        await read_all(store, KEY)
    # A key whose folder held only the deleted object can be used again.
    await put(store, "2026/11/26/7/callee.ogg", b"again")
    assert await read_all(store, "2026/11/26/7/callee.ogg") == b"again"


async def test_a_failed_commit_leaves_what_was_there_and_consumes_its_temp(
    store: ObjectStore, tmp_path: Path
) -> None:
    await put(store, KEY, b"what was there")
    # The scratch file cannot be read (it points nowhere): nothing is stored.
    broken = store.temp_path(KEY)
    os.symlink(tmp_path / "nowhere", broken)
    with pytest.raises(FileNotFoundError):
        await store.commit(broken, KEY, content_type="audio/ogg")
    assert not os.path.lexists(broken)
    # A bad key: refused, and its file is consumed all the same.
    temp = store.temp_path(KEY)
    temp.write_bytes(b"elsewhere")
    with pytest.raises(ValueError, match="not an object key"):
        await store.commit(temp, "../escaped.ogg", content_type="audio/ogg")
    assert not temp.exists()
    assert await read_all(store, KEY) == b"what was there"
    info = await store.stat(KEY)
    assert info is not None and info.bytes == len(b"what was there")


BAD_KEYS = ["../etc/passwd", "/abs/caller.ogg", "a/../b.ogg", "a//b", "", "a/.hidden", "a b"]


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_keys_cannot_leave_the_store(store: ObjectStore, key: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not an object key"):
        store.temp_path(key)
    with pytest.raises(ValueError, match="not an object key"):
        await store.stat(key)
    with pytest.raises(ValueError, match="not an object key"):
        await read_all(store, key)
    with pytest.raises(ValueError, match="not an object key"):
        await store.fetch(key, tmp_path / "x")
    with pytest.raises(ValueError, match="not an object key"):
        await store.delete(key)


@pytest.mark.parametrize("key", BAD_KEYS + ["x" * 513])
def test_check_key_refuses(key: str) -> None:
    with pytest.raises(ValueError, match="not an object key"):
        check_key(key)


@pytest.mark.parametrize("key", ["a", "2026/11/26/7/mixed.ogg", "uploads/a-b_c.d.jpg", "x" * 512])
def test_check_key_accepts(key: str) -> None:
    assert check_key(key) == key


async def test_a_large_object_is_stored_whole_and_read_in_bounded_chunks(
    store: ObjectStore, tmp_path: Path
) -> None:
    """20 MB in and out; reading it, and fetching it, never holds more than a few
    chunks in memory (tracemalloc counts what Python allocates)."""
    data = pattern(20 * MiB + 12_345)
    stored = await put(store, "big/object.bin", data, "application/octet-stream")
    assert (stored.bytes, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    del data
    digest, chunks, largest = hashlib.sha256(), 0, 0
    tracemalloc.start()
    try:
        async with contextlib.aclosing(store.read("big/object.bin")) as reading:
            async for chunk in reading:
                digest.update(chunk)
                chunks += 1
                largest = max(largest, len(chunk))
                del chunk
        _, read_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        assert await store.fetch("big/object.bin", tmp_path / "big.bin")
        _, fetch_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest.hexdigest() == stored.sha256
    assert largest <= 256 * 1024 and chunks >= 80
    assert read_peak < 4 * MiB, read_peak
    assert fetch_peak < 4 * MiB, fetch_peak
    assert hashlib.sha256((tmp_path / "big.bin").read_bytes()).hexdigest() == stored.sha256


async def test_leftover_scratch_files_are_swept_by_age(store: ObjectStore) -> None:
    old, new = store.temp_path("a/caller.ogg"), store.temp_path("a/callee.ogg")
    old.write_bytes(b"x")
    new.write_bytes(b"y")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert await store.sweep_temp(older_than=600) == 1
    assert not old.exists() and new.exists()


# --- The local folder -------------------------------------------------------------------


async def test_local_objects_are_readable_by_owner_and_group_only(tmp_path: Path) -> None:
    root = tmp_path / "objects"
    store = LocalStore(root)
    temp = store.temp_path("2026/11/26/7/mixed.ogg")
    temp.write_bytes(b"OggS")  # as PyAV writes it: with the process umask
    os.chmod(temp, 0o666)
    await store.commit(temp, "2026/11/26/7/mixed.ogg", content_type="audio/ogg")
    assert (root / "2026/11/26/7/mixed.ogg").stat().st_mode & 0o777 == 0o640
    for directory in (root, root / ".tmp", root / "2026", root / "2026/11/26/7"):
        assert directory.stat().st_mode & 0o777 == 0o750, directory
    # Its type is beside it, under a name no key can have; deleting takes both, and
    # the folders it leaves empty.
    assert (root / "2026/11/26/7/.mixed.ogg.type").read_text() == "audio/ogg"
    assert await store.delete("2026/11/26/7/mixed.ogg")
    assert not (root / "2026").exists() and (root / ".tmp").is_dir()


async def test_a_local_file_without_its_type_is_served_as_bytes(tmp_path: Path) -> None:
    """A file put there by hand (the recordings of before the object store)."""
    store = LocalStore(tmp_path)
    (tmp_path / "2026/11/26/7").mkdir(parents=True)
    (tmp_path / "2026/11/26/7/caller.ogg").write_bytes(b"OggS")
    info = await store.stat("2026/11/26/7/caller.ogg")
    assert info is not None and info.content_type == "application/octet-stream"


# --- S3 only ----------------------------------------------------------------------------


@pytest.fixture
async def s3(
    s3_endpoint: str, s3_bucket: str, s3_prefix: str, tmp_path: Path
) -> AsyncIterator[S3Store]:
    store = await open_s3(s3_endpoint, s3_bucket, s3_prefix, tmp_path)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def bucket(s3_endpoint: str) -> AsyncIterator[S3Client]:
    """A client of the test's own, to look at the bucket behind the store's back."""
    async with s3_client(s3_endpoint) as client:
        yield client


async def unfinished(client: S3Client, bucket: str, prefix: str) -> list[str]:
    listed = await client.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    return [upload["Key"] for upload in listed.get("Uploads", [])]


async def test_s3_stores_large_objects_in_parts_and_small_ones_at_once(
    s3: S3Store, bucket: S3Client, s3_bucket: str, s3_prefix: str
) -> None:
    await put(s3, "small.bin", pattern(MIN_PART_SIZE - 1))
    await put(s3, "large.bin", pattern(2 * MIN_PART_SIZE + 1), "image/webp")
    small = await bucket.head_object(Bucket=s3_bucket, Key=s3_prefix + "small.bin")
    large = await bucket.head_object(Bucket=s3_bucket, Key=s3_prefix + "large.bin")
    assert "-" not in small["ETag"]  # one PutObject
    assert large["ETag"].strip('"').endswith("-3")  # a multipart upload of 3 parts
    assert large["ContentType"] == "image/webp"
    assert await unfinished(bucket, s3_bucket, s3_prefix) == []


async def test_a_failed_multipart_upload_is_aborted_and_leaves_what_was_there(
    s3_endpoint: str, bucket: S3Client, s3_bucket: str, s3_prefix: str, tmp_path: Path
) -> None:
    config = s3_config(s3_endpoint, s3_bucket, s3_prefix, retries=1)
    s3 = await S3Store.open(config, tmp_path, part_size=MIN_PART_SIZE)
    try:
        await failing_multipart_upload(s3, bucket, s3_bucket, s3_prefix)
    finally:
        await s3.close()


async def failing_multipart_upload(
    s3: S3Store, bucket: S3Client, s3_bucket: str, s3_prefix: str
) -> None:
    await put(s3, KEY, b"what was there")
    parts = 0

    def network_fails_after_the_first_part(**_: Any) -> None:
        nonlocal parts
        parts += 1
        if parts > 1:  # every retry of the second part too
            raise EndpointConnectionError(endpoint_url=s3.client.meta.endpoint_url)

    s3.client.meta.events.register("before-send.s3.UploadPart", network_fails_after_the_first_part)
    temp = s3.temp_path(KEY)
    temp.write_bytes(pattern(3 * MIN_PART_SIZE))
    with pytest.raises(ObjectStoreError, match="part 2") as failed:
        await s3.commit(temp, KEY, content_type="audio/ogg")
    assert failed.value.retryable
    assert parts == 3  # botocore retried the part before giving up
    assert not temp.exists()
    assert await read_all(s3, KEY) == b"what was there"
    assert await unfinished(bucket, s3_bucket, s3_prefix) == []


async def test_a_cancelled_upload_is_aborted(
    s3: S3Store, bucket: S3Client, s3_bucket: str, s3_prefix: str
) -> None:
    second_part = asyncio.Event()
    parts = 0

    async def hang_on_the_second_part(**_: Any) -> None:
        nonlocal parts
        parts += 1
        if parts == 2:
            second_part.set()
            await asyncio.Event().wait()  # until cancelled

    s3.client.meta.events.register("before-send.s3.UploadPart", hang_on_the_second_part)
    temp = s3.temp_path(KEY)
    temp.write_bytes(pattern(3 * MIN_PART_SIZE))
    commit = asyncio.create_task(s3.commit(temp, KEY, content_type="audio/ogg"))
    await asyncio.wait_for(second_part.wait(), 30)
    assert await unfinished(bucket, s3_bucket, s3_prefix) == [s3_prefix + KEY]
    commit.cancel()
    with pytest.raises(asyncio.CancelledError):
        await commit
    assert await unfinished(bucket, s3_bucket, s3_prefix) == []
    assert await s3.stat(KEY) is None
    assert not temp.exists()


async def test_unfinished_uploads_a_crash_left_are_swept_once_old(
    s3: S3Store, bucket: S3Client, s3_bucket: str, s3_prefix: str
) -> None:
    """An instance killed mid-upload leaves a multipart upload that was never completed:
    no object, but parts that cost storage until aborted."""
    started = await bucket.create_multipart_upload(Bucket=s3_bucket, Key=s3_prefix + KEY)
    await bucket.upload_part(
        Bucket=s3_bucket,
        Key=s3_prefix + KEY,
        UploadId=started["UploadId"],
        PartNumber=1,
        Body=pattern(MIN_PART_SIZE),
    )
    other = await bucket.create_multipart_upload(Bucket=s3_bucket, Key="elsewhere/x.bin")
    assert await s3.stat(KEY) is None
    assert await unfinished(bucket, s3_bucket, s3_prefix) == [s3_prefix + KEY]
    # (moto dates every upload 2010-11-10, so its age is not what is tested here: the
    # scratch files' test is about ages; this one, about what the sweep reaches.) Two
    # sweeps at once (two instances): one aborts it, the other finds it gone.
    swept = await asyncio.gather(s3.sweep_temp(older_than=0), s3.sweep_temp(older_than=0))
    assert sorted(swept) == [0, 1]
    assert await unfinished(bucket, s3_bucket, s3_prefix) == []
    # Only under the store's prefix: another deployment's uploads are not its own.
    assert await unfinished(bucket, s3_bucket, "elsewhere/") == ["elsewhere/x.bin"]
    await bucket.abort_multipart_upload(
        Bucket=s3_bucket, Key="elsewhere/x.bin", UploadId=other["UploadId"]
    )


async def test_a_missing_bucket_or_unreachable_server_fails_at_open(
    s3_endpoint: str, tmp_path: Path
) -> None:
    with pytest.raises(ObjectStoreError, match="'no-such-bucket': no such bucket") as missing:
        await S3Store.open(s3_config(s3_endpoint, "no-such-bucket"), tmp_path)
    assert not missing.value.retryable
    nobody = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ObjectStoreError, match="Could not connect") as away:
        await S3Store.open(s3_config(nobody, "rtc-tests", retries=0), tmp_path)
    assert away.value.retryable


# --- The core's [objects] section -------------------------------------------------------


async def test_the_core_builds_the_configured_store(
    tmp_path: Path, s3_objects: dict[str, Any]
) -> None:
    local = await open_object_store(settings_for("postgresql://unused/db", tmp_path))
    assert isinstance(local, LocalStore) and local.root == tmp_path / "objects"
    s3_store = await open_object_store(
        settings_for("postgresql://unused/db", tmp_path, objects=s3_objects)
    )
    try:
        assert isinstance(s3_store, S3Store) and s3_store.prefix == s3_objects["prefix"]
        await put(s3_store, KEY, b"through the settings")
        assert await read_all(s3_store, KEY) == b"through the settings"
    finally:
        await s3_store.close()


async def test_start_up_stops_on_a_bucket_it_cannot_use(
    tmp_path: Path, s3_objects: dict[str, Any]
) -> None:
    settings = settings_for(
        "postgresql://unused/db", tmp_path, objects={**s3_objects, "bucket": "not-made"}
    )
    with pytest.raises(
        ConfigError, match="objects.bucket 'not-made' at http://127.0.0.1:.*no such bucket"
    ):
        await open_object_store(settings)


async def test_a_local_store_in_production_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(
        "postgresql://unused/db", tmp_path, server={"environment": "production"}
    )
    with caplog.at_level(logging.WARNING, logger="rtc.objects"):
        await open_object_store(settings)
    (warning,) = [r for r in caplog.records if r.name == "rtc.objects"]
    assert "every instance mounts" in warning.getMessage()
