"""Recordings for the people allowed to hear them: metadata, signed download links,
the download itself (HTTP port), and retention.

Who may: admins always; the call's parties only when ``recordings.parties_may_download``
is on. A link (:mod:`recordings.links`) is issued to one user for one leg and expires
after ``recordings.link_ttl`` seconds; the HTTP handler checks the signature (constant
time) and expiry before anything else, then streams the file from the object store
with Range support (:mod:`kernel.ranges`: 206 for a satisfiable range, 416 otherwise,
``If-Range`` on its ETag or date), whichever instance stored it. Anything else is
refused: a bad or expired link 403, a deleted recording 410.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

from aiohttp import web

from kernel.clock import Clock
from kernel.errors import Forbidden, NotFound, StateConflict
from kernel.jobs import Job, Tick
from kernel.objects import ObjectInfo, ObjectStore
from kernel.ranges import RangeNotSatisfiable, http_date, requested_range, unsatisfied
from kernel.rpc.cursors import decode_cursor, next_cursor
from kernel.rpc.registry import Access, Caller, MethodRegistry
from recordings.jobs import MixRecording
from recordings.links import LEGS, Grant, LinkRefused, LinkSigner
from recordings.metrics import RecordingMetrics
from recordings.mix import mix_legs
from recordings.models import (
    LegView,
    LinkParams,
    ListRecordings,
    MixedView,
    RecordingLink,
    RecordingPage,
    RecordingRef,
    RecordingView,
)
from recordings.settings import RecordingSettings
from recordings.store import CONTENT_TYPE, file_key
from storage import recordings as rows
from storage.database import Database
from storage.recordings import LegRow, RecordingRow

log = logging.getLogger("rtc.recordings")

_RETENTION_BATCH = 200
# Temporary files older than this are leftovers of a crash (a call lasts less).
_TEMP_MAX_AGE = 86400.0
# A recording still open this long after its call ended lost its media instance.
_ABANDONED_AFTER = timedelta(minutes=10)


class RecordingService:
    def __init__(
        self,
        db: Database,
        store: ObjectStore,
        signer: LinkSigner,
        clock: Clock,
        settings: RecordingSettings,
        metrics: RecordingMetrics,
        *,
        public_url: str,
    ) -> None:
        self._db = db
        self.store = store
        self._signer = signer
        self._clock = clock
        self._settings = settings
        self._metrics = metrics
        self.public_url = public_url.rstrip("/")

    def register(self, registry: MethodRegistry) -> None:
        add = registry.add
        add("recordings.get", self.get, params=RecordingRef, result=RecordingView)
        add("recordings.link", self.link, params=LinkParams, result=RecordingLink)
        add(
            "admin.recordings.list",
            self.list_all,
            params=ListRecordings,
            result=RecordingPage,
            access=Access.ADMIN,
        )

    # The download's path on the HTTP port (``recordings.links`` signs these).
    DOWNLOAD_PATH = r"/recordings/{recording_id:\d+}/{leg:caller|callee|mixed}.ogg"

    # --- Methods -----------------------------------------------------------------------------

    async def _readable(self, caller: Caller, recording_id: int) -> RecordingRow:
        user_id = caller.require_user()
        row = await rows.get(self._db, recording_id)
        party = row is not None and user_id in (row.caller_id, row.callee_id)
        if row is None or not (caller.role == "admin" or party):
            raise NotFound("no such recording", field="recordingId")
        if caller.role != "admin" and not self._settings.parties_may_download:
            raise Forbidden(
                "recordings of your calls are available to admins only",
                reason="recordings_admin_only",
            )
        return row

    async def get(self, caller: Caller, params: RecordingRef) -> RecordingView:
        """A recording's metadata: state, duration, and each leg's file."""
        return recording_view(await self._readable(caller, params.recording_id))

    async def link(self, caller: Caller, params: LinkParams) -> RecordingLink:
        """A signed link to download one leg (Ogg/Opus), valid ``recordings.link_ttl``
        seconds, for the asking user only."""
        row = await self._readable(caller, params.recording_id)
        if row.state not in ("ready", "failed") or _key_of(row, params.leg) is None:
            raise StateConflict(
                "this leg's file is not available" + (" yet" if row.state == "recording" else ""),
                recordingId=row.id,
                status=row.state,
                action="link",
            )
        expires = int(self._clock.now().timestamp() + self._settings.link_ttl)
        assert caller.user_id is not None
        grant = Grant(row.id, params.leg, expires, caller.user_id)
        return RecordingLink(
            url=self.public_url + self._signer.path(grant),
            expires_at=datetime.fromtimestamp(expires, UTC),
            leg=params.leg,
        )

    async def list_all(self, caller: Caller, params: ListRecordings) -> RecordingPage:
        """Recordings not deleted, newest first (of one call or all)."""
        query = ("admin.recordings", params.call_id)
        found = await rows.page(
            self._db,
            call_id=params.call_id,
            before_id=decode_cursor(params.cursor, query),
            limit=params.limit + 1,
        )
        return RecordingPage(
            recordings=[recording_view(r) for r in found[: params.limit]],
            next_cursor=next_cursor([r.id for r in found], params.limit, query),
        )

    # --- The download --------------------------------------------------------------------

    async def download(self, request: web.Request) -> web.StreamResponse:
        try:
            grant = self._signer.verify(
                request.match_info["recording_id"],
                request.match_info["leg"],
                dict(request.query),
                self._clock.now().timestamp(),
            )
        except LinkRefused as refused:
            self._metrics.recording_downloads.labels("refused").inc()
            return web.json_response({"error": str(refused)}, status=403)
        row = await rows.get(self._db, grant.recording_id)
        key = _key_of(row, grant.leg) if row is not None else None
        info = await self.store.stat(key) if key is not None else None
        if row is None or row.state == "deleted" or key is None or info is None:
            self._metrics.recording_downloads.labels("gone").inc()
            return web.json_response({"error": "this recording is gone"}, status=410)
        self._metrics.recording_downloads.labels("ok").inc()
        log.info(
            "recording downloaded",
            extra={"recording": grant.recording_id, "leg": grant.leg, "user": grant.user_id},
        )
        headers = {
            "Content-Type": CONTENT_TYPE,
            "Cache-Control": "private, no-store",
            "Content-Disposition": f'attachment; filename="call-{row.call_id}-{grant.leg}.ogg"',
        }
        return await _serve(request, self.store, info, headers)

    # --- The mixed file (job recordings.mix) ---------------------------------------------

    async def mix(self, job: Job[MixRecording]) -> None:
        """Mix a recording's two legs into one file (enqueued when both were stored), on
        whichever instance runs the job: the legs come from the object store."""
        recording_id = job.payload.recording_id
        row = await rows.get(self._db, recording_id)
        if row is None or row.state == "deleted" or row.mixed_key is not None:
            return  # gone, or made by an earlier attempt
        key = file_key(row.started_at, row.call_id, "mixed")
        scratch = [self.store.temp_path(leg.storage_key) for leg in row.legs]
        temp = self.store.temp_path(key)
        try:
            for leg, path in zip(row.legs, scratch, strict=True):
                if not await self.store.fetch(leg.storage_key, path):
                    # Stored before its rows were written: gone since (retention), so no
                    # later attempt can find it either.
                    log.error(
                        "recording not mixed: a leg is not in the store",
                        extra={"recording": row.id, "leg": leg.leg, "key": leg.storage_key},
                    )
                    return
            legs = [(path, leg.offset_ms) for leg, path in zip(row.legs, scratch, strict=True)]
            duration = await asyncio.to_thread(mix_legs, legs, temp)
            stored = await self.store.commit(temp, key, content_type=CONTENT_TYPE)
        finally:
            for path in (*scratch, temp):
                path.unlink(missing_ok=True)
        if not await rows.set_mixed(
            self._db,
            row.id,
            key=stored.key,
            size=stored.bytes,
            sha256=stored.sha256,
            duration_ms=duration,
        ):
            await self.store.delete(stored.key)  # deleted by retention meanwhile
            return
        log.info("recording mixed", extra={"recording": row.id, "duration_ms": duration})

    # --- Retention -----------------------------------------------------------------------

    async def retention(self, job: Job[Tick]) -> None:
        """The ``recordings.retention`` job."""
        deleted = await self.enforce_retention()
        if deleted:
            log.info("recordings past retention deleted", extra={"deleted": deleted})

    async def enforce_retention(self) -> int:
        """Delete the files of recordings past ``retention_days`` and mark them deleted;
        mark failed the recordings whose media instance died; remove temporary leftovers.
        How many recordings were deleted."""
        now = self._clock.now()
        abandoned = await rows.abandon(self._db, now - _ABANDONED_AFTER, now)
        if abandoned:
            log.warning("recordings abandoned", extra={"recordings": abandoned})
        cutoff = now - timedelta(days=self._settings.retention_days)
        deleted = 0
        while batch := await rows.expired(self._db, cutoff, _RETENTION_BATCH):
            for recording in batch:
                for file in _files_of(recording):
                    await self.store.delete(file)
            deleted += await rows.mark_deleted(self._db, [r.id for r in batch], now)
        removed = await self.store.sweep_temp(_TEMP_MAX_AGE)
        if deleted or removed:
            log.info("recordings pruned", extra={"deleted": deleted, "temp_files": removed})
        return deleted


async def _serve(
    request: web.Request, store: ObjectStore, info: ObjectInfo, headers: dict[str, str]
) -> web.StreamResponse:
    """The object of ``info`` as the answer to a GET (or HEAD), streamed from the store:
    all of it (200), the range asked for (206), or 416."""
    size = info.bytes
    headers = {
        **headers,
        "Accept-Ranges": "bytes",
        "Last-Modified": http_date(info.modified),
    }
    if info.etag:
        headers["ETag"] = f'"{info.etag}"'
    try:
        wanted = requested_range(
            request.headers.get("Range"),
            size,
            if_range=request.headers.get("If-Range"),
            etag=info.etag,
            modified=info.modified,
        )
    except RangeNotSatisfiable:
        headers["Content-Range"] = unsatisfied(size)
        return web.Response(status=416, headers=headers)
    response = web.StreamResponse(status=200 if wanted is None else 206, headers=headers)
    start, end = (0, size) if wanted is None else (wanted.start, wanted.end)
    if wanted is not None:
        response.headers["Content-Range"] = wanted.content_range(size)
    response.content_length = end - start
    await response.prepare(request)
    if request.method == "HEAD":
        return response
    try:
        async with contextlib.aclosing(store.read(info.key, start, end)) as chunks:
            async for chunk in chunks:
                await response.write(chunk)
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away (a player seeking elsewhere, a closed app)
    return response


def _files_of(row: RecordingRow) -> set[str]:
    """Every file a recording may have: those its rows name, and those at its derived
    keys. A recording whose rows were never written (the database stayed away after
    its files were stored) has files that only the derived keys find."""
    named = {key for name in LEGS if (key := _key_of(row, name)) is not None}
    return named | {file_key(row.started_at, row.call_id, name) for name in LEGS}


def recording_view(row: RecordingRow) -> RecordingView:
    return RecordingView(
        recording_id=row.id,
        call_id=row.call_id,
        booking_id=row.booking_id,
        state=row.state,
        error=row.error,
        duration_ms=row.duration_ms,
        started_at=row.started_at,
        ended_at=row.ended_at,
        legs=[leg_view(leg) for leg in row.legs],
        mixed=None
        if row.mixed_key is None
        else MixedView(
            duration_ms=row.mixed_duration_ms or 0,
            bytes=row.mixed_bytes or 0,
            sha256=row.mixed_sha256 or "",
        ),
    )


def _key_of(row: RecordingRow, leg: str) -> str | None:
    """The storage key of a leg's file, or of the mixed file; None if there is none."""
    if leg == "mixed":
        return row.mixed_key
    return next((x.storage_key for x in row.legs if x.leg == leg), None)


def leg_view(leg: LegRow) -> LegView:
    return LegView(
        leg=leg.leg,
        duration_ms=leg.duration_ms,
        bytes=leg.bytes,
        codec=leg.codec,
        sha256=leg.sha256,
        packets=leg.packets,
        lost=leg.lost,
        error=leg.error,
        offset_ms=leg.offset_ms,
    )
