"""The HTTP side of uploads: receiving the one request of an upload URL, and serving
the stored images (public pictures, private files by signed link).

Receiving (``PUT /uploads/<uploadId>?exp&sig``), in this order, each step refusing
with a JSON body ``{"error": <words>, "reason": <name>}``:

1. the signature (constant time) and the expiry: 403 ``invalid_link``, 410 ``expired``;
2. the upload is claimed for this request: 409 ``used`` for any later one;
3. a ``Content-Length`` over ``uploads.max_bytes``: 413 ``too_large`` before a byte
   is read;
4. the body is streamed to a scratch file of the object store, counted as it comes: one
   byte past the cap and it is cut off (413 ``too_large``, the connection closed);
   nothing is held in memory but the chunk being written;
5. the first bytes name the format (:func:`api.uploads.images.sniff`): 415
   ``not_an_image`` / ``unsupported_type``;
6. decoding and re-encoding in a worker thread, at most ``uploads.workers`` at once:
   413 ``too_many_pixels``, 422 ``corrupt``;
7. the owner's quota: 409 ``quota_exceeded``;
8. the image and its thumbnail are committed to the store, then the row says ready:
   201 with the upload's view.

A refused file leaves nothing: the scratch files are removed and the upload's row is
deleted (the client asks ``uploads.create`` again).

Serving: ``GET /public/uploads/<uploadId>/<image|thumb>`` for files anyone may see
(:func:`api.uploads.service.is_public`; otherwise 404), cached publicly for
``uploads.public_max_age`` with an ETag (the URL changes when the picture does);
``GET /uploads/<uploadId>/<image|thumb>?exp&u&sig`` for the rest, ``Cache-Control:
private``. Both answer Range requests (:mod:`kernel.ranges`: one range, 206; an
unsatisfiable one, 416) and conditional ones (If-None-Match: 304), streaming from the
store.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CollectorRegistry, Counter

from api.uploads import images
from api.uploads.links import LinkRefused
from api.uploads.service import Uploads, is_public
from kernel.objects import ObjectStore
from kernel.ranges import RangeNotSatisfiable, requested_range, unsatisfied
from storage import uploads as rows
from storage.database import Database
from storage.uploads import Stored, UploadRow

log = logging.getLogger("rtc.uploads")

PUT_PATH = r"/uploads/{upload_id:[0-9a-fA-F-]{32,36}}"
FILE_PATH = r"/uploads/{upload_id:[0-9a-fA-F-]{32,36}}/{variant:image|thumb}"
PUBLIC_PATH = r"/public/uploads/{upload_id:[0-9a-fA-F-]{32,36}}/{variant:image|thumb}"

_CHUNK = 64 * 1024
# Seconds past the receive timeout that a claimed upload is kept from the prune.
_PROCESSING_GRACE = 300.0


class UploadMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.received = Counter(
            "rtc_uploads_received_total",
            "Upload requests by outcome (stored, or the reason refused: too_large,"
            " not_an_image, unsupported_type, too_many_pixels, corrupt, quota_exceeded,"
            " expired, used, invalid_link, timeout, incomplete, gone)",
            ["outcome"],
            registry=registry,
        )
        self.served = Counter(
            "rtc_upload_downloads_total",
            "Requests for uploaded images, by route (public, private) and outcome"
            " (ok, refused, gone)",
            ["route", "outcome"],
            registry=registry,
        )


class Refused(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


def object_keys(row: UploadRow) -> tuple[str, str]:
    """Where an upload's image and thumbnail go: chosen by the server, never a client."""
    when = row.created_at
    base = f"uploads/{row.purpose}/{when:%Y}/{when:%m}/{row.id}"
    return base, f"{base}.thumb"


class UploadRoutes:
    def __init__(self, uploads: Uploads, db: Database, metrics: UploadMetrics) -> None:
        self._uploads = uploads
        self._db = db
        self._metrics = metrics
        self._store: ObjectStore = uploads.store
        self._settings = uploads.settings
        self._limits = images.Limits(
            max_pixels=self._settings.max_pixels,
            max_side=self._settings.max_side,
            thumb_side=self._settings.thumb_side,
            quality=self._settings.quality,
        )
        self._slots = asyncio.Semaphore(self._settings.workers)

    # --- Receiving -----------------------------------------------------------------------

    async def put(self, request: web.Request) -> web.StreamResponse:
        now = self._uploads.clock.now()
        try:
            upload_id = self._uploads.signer.verify_put(
                request.match_info["upload_id"], dict(request.query), now.timestamp()
            )
        except LinkRefused as refused:
            status = 410 if refused.reason == "expired" else 403
            return await self._refuse(request, Refused(status, refused.reason, str(refused)))
        hold = now + timedelta(seconds=self._settings.receive_timeout + _PROCESSING_GRACE)
        row = await rows.claim(self._db, upload_id, now, hold)
        if row is None:
            refusal = Refused(409, "used", "this upload URL was used already (or withdrawn)")
            return await self._refuse(request, refusal)
        try:
            stored = await self._receive(request, row)
        except Refused as refused:
            await rows.forget(self._db, row.id)
            return await self._refuse(request, refused)
        except BaseException:
            await asyncio.shield(rows.forget(self._db, row.id))
            raise
        self._metrics.received.labels("stored").inc()
        log.info(
            "upload stored",
            extra={"upload": str(stored.id), "user": stored.owner_id, "bytes": stored.bytes},
        )
        view = self._uploads.view(stored, stored.owner_id)
        return web.Response(
            status=201,
            body=view.__pydantic_serializer__.to_json(view, by_alias=True),
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    async def _receive(self, request: web.Request, row: UploadRow) -> UploadRow:
        s = self._settings
        declared = request.content_length
        if declared is not None and declared > s.max_bytes:
            raise Refused(413, "too_large", f"the file is over {s.max_bytes} bytes")
        image_key, thumb_key = object_keys(row)
        scratch = self._store.temp_path(f"{image_key}.incoming")
        image_temp = self._store.temp_path(image_key)
        thumb_temp = self._store.temp_path(thumb_key)
        try:
            head = await self._stream(request, scratch)
            kind = _sniff(head)
            async with self._slots:
                encoded = await asyncio.to_thread(
                    _process, scratch, kind, image_temp, thumb_temp, self._limits
                )
            scratch.unlink(missing_ok=True)
            size = image_temp.stat().st_size + thumb_temp.stat().st_size
            used = await rows.stored_bytes(self._db, row.owner_id or 0)
            if used + size > s.quota_bytes:
                raise Refused(409, "quota_exceeded", "your uploads take all the room you have")
            image = await self._store.commit(
                image_temp, image_key, content_type=encoded.content_type
            )
            try:
                thumb = await self._store.commit(
                    thumb_temp, thumb_key, content_type=encoded.content_type
                )
            except BaseException:
                await asyncio.shield(self._store.delete(image.key))
                raise
            stored = Stored(
                image_key=image.key,
                thumb_key=thumb.key,
                content_type=encoded.content_type,
                bytes=image.bytes,
                width=encoded.width,
                height=encoded.height,
                sha256=image.sha256,
                thumb_bytes=thumb.bytes,
                thumb_width=encoded.thumb_width,
                thumb_height=encoded.thumb_height,
                thumb_sha256=thumb.sha256,
            )
            expires = self._uploads.clock.now() + timedelta(seconds=s.unattached_ttl)
            try:
                async with self._db.transaction() as conn:
                    # Checked again under the owner's lock with what is stored now: two
                    # uploads finishing at once cannot both fit where one would.
                    if await rows.lock_owner(conn, row.owner_id or 0):
                        used = await rows.stored_bytes(conn, row.owner_id or 0)
                        if used + size > s.quota_bytes:
                            raise Refused(
                                409, "quota_exceeded", "your uploads take all the room you have"
                            )
                    ready = await rows.mark_ready(conn, row.id, stored, expires)
            except BaseException:
                await asyncio.shield(self._delete_objects(image.key, thumb.key))
                raise
            if ready is None:  # the account was erased meanwhile
                await self._delete_objects(image.key, thumb.key)
                raise Refused(410, "gone", "this upload was withdrawn (its account is gone)")
            return ready
        finally:
            for temp in (scratch, image_temp, thumb_temp):
                temp.unlink(missing_ok=True)

    async def _delete_objects(self, *keys: str) -> None:
        for key in keys:
            await self._store.delete(key)

    async def _stream(self, request: web.Request, scratch: Path) -> bytes:
        """Write the body to ``scratch`` chunk by chunk, refusing it once it passes
        ``max_bytes`` or takes longer than ``receive_timeout``; its first bytes."""
        limit = self._settings.max_bytes
        head = b""
        received = 0
        try:
            async with asyncio.timeout(self._settings.receive_timeout):
                with open(scratch, "wb") as out:
                    async for chunk in request.content.iter_chunked(_CHUNK):
                        received += len(chunk)
                        if received > limit:
                            raise Refused(413, "too_large", f"the file is over {limit} bytes")
                        if len(head) < images.HEAD_BYTES:
                            head += chunk[: images.HEAD_BYTES - len(head)]
                        out.write(chunk)
        except TimeoutError:
            raise Refused(408, "timeout", "the file took too long to arrive") from None
        except (ConnectionError, HttpProcessingError):
            raise Refused(400, "incomplete", "the request's body did not arrive whole") from None
        if received == 0:
            raise Refused(415, "not_an_image", "the request has no body")
        return head

    async def _refuse(self, request: web.Request, refused: Refused) -> web.StreamResponse:
        """Answer a refusal. A body within the cap that was not read yet (a bad, expired
        or used URL) is read and discarded first: a proxy still sending it would
        otherwise see the connection close under it and answer 502 instead of the
        refusal. A body over the cap is not read: the connection is closed after the
        answer."""
        self._metrics.received.labels(refused.reason).inc()
        if refused.status != 413:
            await self._discard_body(request)
        body = orjson.dumps({"error": refused.message, "reason": refused.reason})
        response = web.Response(
            status=refused.status,
            body=body,
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )
        transport = request.transport
        if request.content.at_eof() or transport is None or transport.is_closing():
            return response
        response.force_close()
        await response.prepare(request)
        await response.write_eof()
        transport.close()  # the rest of the body is not read
        return response

    async def _discard_body(self, request: web.Request) -> None:
        """Read what is left of the body, at most ``max_bytes`` + 1 (then give up: the
        connection is closed after the answer)."""
        left = self._settings.max_bytes + 1
        try:
            async with asyncio.timeout(self._settings.receive_timeout):
                while left > 0 and not request.content.at_eof():
                    chunk = await request.content.read(min(_CHUNK, left))
                    if not chunk:
                        break
                    left -= len(chunk)
        except (TimeoutError, ConnectionError, HttpProcessingError):
            pass

    # --- Serving -------------------------------------------------------------------------

    async def public(self, request: web.Request) -> web.StreamResponse:
        row = await self._row(request.match_info["upload_id"])
        if row is None or not is_public(row):
            self._metrics.served.labels("public", "gone").inc()
            return _error(404, "gone", "no such picture")
        max_age = self._settings.public_max_age
        self._metrics.served.labels("public", "ok").inc()
        return await self._serve(
            request, row, request.match_info["variant"], f"public, max-age={max_age}, immutable"
        )

    async def private(self, request: web.Request) -> web.StreamResponse:
        now = self._uploads.clock.now().timestamp()
        try:
            grant = self._uploads.signer.verify_file(
                request.match_info["upload_id"],
                request.match_info["variant"],
                dict(request.query),
                now,
            )
        except LinkRefused as refused:
            self._metrics.served.labels("private", "refused").inc()
            status = 410 if refused.reason == "expired" else 403
            return _error(status, refused.reason, str(refused))
        row = await rows.get(self._db, grant.upload_id)
        if row is None or row.state not in ("ready", "attached") or row.owner_id is None:
            self._metrics.served.labels("private", "gone").inc()
            return _error(410, "gone", "this file is gone")
        self._metrics.served.labels("private", "ok").inc()
        log.info(
            "upload downloaded",
            extra={"upload": str(row.id), "variant": grant.variant, "user": grant.user_id},
        )
        left = max(0, int(grant.expires - now))
        return await self._serve(request, row, grant.variant, f"private, max-age={left}")

    async def _row(self, upload_id: str) -> UploadRow | None:
        try:
            return await rows.get(self._db, UUID(upload_id))
        except ValueError:
            return None

    async def _serve(
        self, request: web.Request, row: UploadRow, variant: str, cache: str
    ) -> web.StreamResponse:
        if variant == "thumb":
            key, size, digest = row.thumb_key, row.thumb_bytes, row.thumb_sha256
        else:
            key, size, digest = row.image_key, row.bytes, row.sha256
        assert key is not None and digest is not None
        etag = f'"{digest[:32]}"'
        headers = {
            "Content-Type": row.content_type or "application/octet-stream",
            "Cache-Control": cache,
            "ETag": etag,
            "Accept-Ranges": "bytes",
            "X-Content-Type-Options": "nosniff",
        }
        if etag in _tags(request.headers.get("If-None-Match", "")):
            return web.Response(status=304, headers=headers)
        try:
            span = requested_range(
                request.headers.get("Range"),
                size,
                if_range=request.headers.get("If-Range"),
                etag=etag.strip('"'),
            )
        except RangeNotSatisfiable:
            headers["Content-Range"] = unsatisfied(size)
            return web.Response(status=416, headers=headers)
        start, end = (0, size) if span is None else (span.start, span.end)
        chunks = self._store.read(key, start, end)
        try:
            try:
                first = await anext(chunks, b"")
            except FileNotFoundError:
                return _error(410, "gone", "this file is gone")
            response = web.StreamResponse(status=200 if span is None else 206, headers=headers)
            if span is not None:
                response.headers["Content-Range"] = span.content_range(size)
            response.content_length = end - start
            await response.prepare(request)
            if request.method != "HEAD":
                await _write_all(response, first, chunks)
            await response.write_eof()
            return response
        finally:
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()


async def _write_all(
    response: web.StreamResponse, first: bytes, chunks: AsyncIterator[bytes]
) -> None:
    if first:
        await response.write(first)
    async for chunk in chunks:
        await response.write(chunk)


def _sniff(head: bytes) -> str:
    try:
        return images.sniff(head)
    except images.Rejected as rejected:
        raise Refused(415, rejected.reason, rejected.message) from None


def _process(
    source: Path, kind: str, image_out: Path, thumb_out: Path, limits: images.Limits
) -> images.Encoded:
    try:
        return images.process(source, kind, image_out, thumb_out, limits)
    except images.Rejected as rejected:
        status = 413 if rejected.reason == "too_many_pixels" else 422
        raise Refused(status, rejected.reason, rejected.message) from None
    finally:
        _release_heap()


def _libc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim  # glibc only
    except (OSError, AttributeError, TypeError):
        return None
    return trim


_TRIM = _libc_trim()


def _release_heap() -> None:
    """Hand the pixel buffers just freed back to the OS. A decoded image is tens of MB;
    glibc keeps what a worker thread freed in that thread's arena, so without this the
    process's RSS would stay at its largest image's size times the workers."""
    if _TRIM is not None:
        _TRIM(0)


def _error(status: int, reason: str, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps({"error": message, "reason": reason}),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _tags(header: str) -> set[str]:
    return {t.strip().removeprefix("W/") for t in header.split(",") if t.strip()}
