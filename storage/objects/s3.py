"""The object store in S3-compatible object storage (AWS S3, MinIO, Cloudflare R2 ...)
through aiobotocore, the asyncio port of AWS's own client (botocore) kept by aio-libs.

Objects are ``<prefix><key>`` in one bucket. Whole or absent: an object is written to
a local scratch file first, then :meth:`S3Store.commit` uploads it; S3 shows an object
only once its PutObject or its multipart upload completes, so a crash never leaves a
half object under a key. A file up to ``part_size`` (8 MiB) is one PutObject; a larger
one is a multipart upload of ``part_size`` parts, aborted when anything fails (a
cancelled commit too). An upload a crash left unfinished is aborted by
:meth:`S3Store.sweep_temp` once it is old. Every body carries its Content-MD5, so the
server refuses a part damaged on the way.

Reads are streamed GETs (a Range GET for a byte range): nothing holds more than one
chunk of an object in memory, and a commit holds one part.

Credentials: those given, else botocore's standard chain (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``, ``~/.aws/credentials``, ``AWS_PROFILE``, a web identity
token, an instance or task role).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
from collections.abc import AsyncGenerator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from . import scratch
from .model import DEFAULT_CONTENT_TYPE, ObjectInfo, ObjectStoreError, StoredObject, check_key

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

log = logging.getLogger("rtc.objects")

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's smallest part but the last
PART_SIZE = 8 * 1024 * 1024
CHUNK = 256 * 1024
_MISSING = {"404", "NoSuchKey", "NotFound"}
_BUCKET_REFUSALS = {
    "404": "no such bucket",
    "NoSuchBucket": "no such bucket",
    "403": "access denied (check the credentials and the bucket's policy)",
    "AccessDenied": "access denied (check the credentials and the bucket's policy)",
    "301": "the bucket is in another region (set the region)",
    "400": "the request was refused (check the region and the addressing style)",
}


@dataclass(frozen=True, slots=True)
class S3Config:
    """Where the objects are, and how to reach them."""

    bucket: str
    prefix: str = ""  # "" or ending with "/": every key is under it
    endpoint_url: str | None = None  # None: AWS's endpoint of the region
    region: str | None = None  # None: the standard chain's (AWS_REGION ...)
    access_key_id: str | None = None  # None: the standard chain's credentials
    secret_access_key: str | None = None
    addressing_style: Literal["auto", "virtual", "path"] = "auto"  # MinIO: "path"
    # Seconds, per request; a request that failed (a timeout, a 5xx, a throttle) is
    # tried again this many times, with botocore's backoff (its "standard" mode).
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retries: int = 4


class S3Store:
    """Objects in one bucket, under a prefix (see the module's docstring). Made by
    :meth:`open`, which checks the bucket is there."""

    def __init__(
        self,
        client: S3Client,
        config: S3Config,
        scratch_dir: Path,
        *,
        part_size: int = PART_SIZE,
        chunk_size: int = CHUNK,
        closing: AsyncExitStack | None = None,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size: at least {MIN_PART_SIZE} bytes (S3's smallest part)")
        if config.prefix and not config.prefix.endswith("/"):
            raise ValueError(f"prefix {config.prefix!r}: must end with '/'")
        if config.prefix:
            check_key(config.prefix.rstrip("/"))
        self.client = client
        self.bucket = config.bucket
        self.prefix = config.prefix
        self.part_size = part_size
        self.chunk_size = chunk_size
        self._tmp = scratch_dir
        self._closing = closing or AsyncExitStack()
        scratch.make_dirs(scratch_dir)

    @classmethod
    async def open(
        cls, config: S3Config, scratch_dir: Path, *, part_size: int = PART_SIZE
    ) -> S3Store:
        """A store on ``config``'s bucket; :class:`ObjectStoreError` (not retryable when
        the bucket is missing or refused) if HeadBucket does not answer that it is there."""
        closing = AsyncExitStack()
        client_config = AioConfig(
            s3={"addressing_style": config.addressing_style},
            signature_version="s3v4",
            retries={"mode": "standard", "max_attempts": config.retries},  # besides the first
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            # Checksums beyond Content-MD5 (CRC32 trailers) only where an operation needs
            # them: several S3-compatible servers refuse the trailers.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        try:
            client = await closing.enter_async_context(
                get_session().create_client(
                    "s3",
                    region_name=config.region or None,
                    endpoint_url=config.endpoint_url or None,
                    aws_access_key_id=config.access_key_id or None,
                    aws_secret_access_key=config.secret_access_key or None,
                    config=client_config,
                )
            )
            store = cls(client, config, scratch_dir, part_size=part_size, closing=closing)
            try:
                with _failures(f"bucket {config.bucket!r}"):
                    await client.head_bucket(Bucket=config.bucket)
            except ObjectStoreError as exc:
                # A HEAD answer has no body: its status is all S3 says.
                said = _BUCKET_REFUSALS.get(exc.code)
                if said is None:
                    raise
                raise ObjectStoreError(
                    f"bucket {config.bucket!r}: {said}", retryable=False, code=exc.code
                ) from exc
        except BaseException:
            await closing.aclose()
            raise
        return store

    def _name(self, key: str) -> str:
        return self.prefix + check_key(key)

    def temp_path(self, key: str) -> Path:
        return scratch.temp_name(self._tmp, key)

    # --- Writing -------------------------------------------------------------------

    async def commit(self, temp: Path, key: str, *, content_type: str) -> StoredObject:
        try:
            name = self._name(key)
            with open(temp, "rb") as f:  # opening is quick: the reads go to a thread
                return await self._upload(f, key, name, content_type)
        finally:
            temp.unlink(missing_ok=True)  # consumed, success or not

    async def _upload(self, f: IO[bytes], key: str, name: str, content_type: str) -> StoredObject:
        digest = hashlib.sha256()
        first = await asyncio.to_thread(_read_part, f, self.part_size, digest)
        if len(first[0]) < self.part_size:  # the whole file: one request
            body, md5 = first
            with _failures(f"storing {key}"):
                await self.client.put_object(
                    Bucket=self.bucket,
                    Key=name,
                    Body=body,
                    ContentType=content_type,
                    ContentMD5=md5,
                )
            return StoredObject(key, len(body), digest.hexdigest())
        with _failures(f"storing {key}"):
            started = await self.client.create_multipart_upload(
                Bucket=self.bucket, Key=name, ContentType=content_type
            )
        upload_id = started["UploadId"]
        try:
            size = await self._upload_parts(f, key, name, upload_id, first, digest)
        except BaseException:
            # Shielded: a cancelled commit still aborts (the parts would cost storage).
            await asyncio.shield(self._abort(name, upload_id))
            raise
        return StoredObject(key, size, digest.hexdigest())

    async def _upload_parts(
        self,
        f: IO[bytes],
        key: str,
        name: str,
        upload_id: str,
        first: tuple[bytes, str],
        digest: Any,
    ) -> int:
        parts: list[Any] = []
        size = 0
        body, md5 = first
        while body:
            number = len(parts) + 1
            with _failures(f"storing {key} (part {number})"):
                answer = await self.client.upload_part(
                    Bucket=self.bucket,
                    Key=name,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=body,
                    ContentMD5=md5,
                )
            parts.append({"ETag": answer["ETag"], "PartNumber": number})
            size += len(body)
            if len(body) < self.part_size:
                break  # the last part
            body, md5 = await asyncio.to_thread(_read_part, f, self.part_size, digest)
        with _failures(f"storing {key}"):
            await self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=name, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        return size

    async def _abort(self, name: str, upload_id: str) -> None:
        try:
            await self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=name, UploadId=upload_id
            )
        except (ClientError, BotoCoreError, aiohttp.ClientError) as exc:
            # Left for sweep_temp, which aborts unfinished uploads once they are old.
            log.warning("unfinished upload not aborted", extra={"key": name, "error": str(exc)})

    # --- Reading -------------------------------------------------------------------

    async def stat(self, key: str) -> ObjectInfo | None:
        name = self._name(key)
        try:
            with _failures(f"looking up {key}"):
                head = await self.client.head_object(Bucket=self.bucket, Key=name)
        except ObjectStoreError as exc:
            if _missing(exc):
                return None
            raise
        return ObjectInfo(
            key=key,
            bytes=head["ContentLength"],
            content_type=head.get("ContentType") or DEFAULT_CONTENT_TYPE,
            modified=head["LastModified"].astimezone(UTC),
            etag=head.get("ETag", "").strip('"'),
        )

    async def read(
        self, key: str, start: int = 0, end: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"not a byte range: [{start}, {end})")
        name = self._name(key)
        if end == start:
            return
        request: dict[str, Any] = {"Bucket": self.bucket, "Key": name}
        if start or end is not None:  # RFC 9110 §14.1.2: last-pos is inclusive
            request["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            with _failures(f"reading {key}"):
                answer = await self.client.get_object(**request)
        except ObjectStoreError as exc:
            if _missing(exc):
                raise FileNotFoundError(2, "no such object", key) from None
            if exc.code == "InvalidRange":  # starts past the end: nothing there
                return
            raise
        async with answer["Body"] as body:
            with _failures(f"reading {key}"):
                while chunk := await body.read(self.chunk_size):
                    yield chunk

    async def fetch(self, key: str, dest: Path) -> bool:
        try:
            with open(dest, "wb") as out:
                async with contextlib.aclosing(self.read(key)) as chunks:
                    async for chunk in chunks:
                        await asyncio.to_thread(out.write, chunk)
        except FileNotFoundError:
            dest.unlink(missing_ok=True)
            return False
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        return True

    # --- Removing ------------------------------------------------------------------

    async def delete(self, key: str) -> bool:
        # S3 answers a DELETE alike whether the object was there or not: ask first.
        if await self.stat(key) is None:
            return False
        with _failures(f"deleting {key}"):
            await self.client.delete_object(Bucket=self.bucket, Key=self._name(key))
        return True

    async def sweep_temp(self, older_than: float) -> int:
        removed = await asyncio.to_thread(scratch.sweep, self._tmp, older_than)
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than)
        stale: list[tuple[str, str]] = []
        with _failures("listing unfinished uploads"):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            async for page in pages:
                for upload in page.get("Uploads", []):
                    if upload["Initiated"] < cutoff:
                        stale.append((upload["Key"], upload["UploadId"]))
        for name, upload_id in stale:
            try:
                with _failures(f"aborting the unfinished upload of {name}"):
                    await self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=name, UploadId=upload_id
                    )
            except ObjectStoreError as exc:
                if exc.code == "NoSuchUpload":
                    continue  # completed or aborted meanwhile (another sweep)
                raise
            removed += 1
        return removed

    async def close(self) -> None:
        await self._closing.aclose()


def _read_part(f: IO[bytes], size: int, digest: Any) -> tuple[bytes, str]:
    """The next ``size`` bytes of ``f`` (fewer at its end) and their Content-MD5; adds
    them to ``digest``. In a worker thread: a read of megabytes must not block the loop."""
    body = f.read(size)
    digest.update(body)
    md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
    return body, md5


@contextlib.contextmanager
def _failures(doing: str) -> Iterator[None]:
    """The client's exceptions as :class:`ObjectStoreError` (the boundary)."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "?"))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        message = error.get("Message") or code
        raise ObjectStoreError(
            f"{doing}: {message} ({code})",
            retryable=status >= 500 or status in (408, 429),
            code=code,
        ) from exc
    except (BotoCoreError, aiohttp.ClientError) as exc:
        raise ObjectStoreError(f"{doing}: {exc}") from exc


def _missing(exc: ObjectStoreError) -> bool:
    return exc.code in _MISSING
