"""Uploads for the features that use them (the :data:`UPLOADS` port) and their methods
(``uploads.create``, ``admin.uploads.list``).

An upload's life: ``uploads.create`` issues a signed URL, good for one request until
``uploads.url_ttl`` (state pending); the HTTP port takes the file
(:mod:`api.uploads.receiver`) and stores the clean image and its thumbnail (ready);
a feature attaches it in its own transaction (:meth:`Uploads.replace`: me.update,
providers.profile.update, reports.create) and it stays while in use (attached);
replacing or removing it, or erasing its account, marks it deleted and its objects
are deleted after the commit (:meth:`Uploads.discard`). What is never attached, and
whatever a crash left, the ``uploads.prune`` job removes.

Who may see what (:meth:`Uploads.view`): a provider's profile picture, and a verified
provider's proofs, have public stable URLs (listings carry them); every other file is
reached by a signed link issued to one user for ``uploads.link_ttl`` seconds: the
owner's own, admins' (proofs, certificates, report evidence).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from uuid import UUID

from api.erasure import Closing
from api.uploads.links import VARIANTS, FileGrant, UploadSigner
from api.uploads.models import (
    IMAGE_TYPES,
    CreateUpload,
    ProfileFiles,
    UploadTicket,
    UploadView,
    UserFiles,
)
from api.uploads.settings import UploadSettings
from kernel.clock import Clock
from kernel.errors import Forbidden, NotFound, RateLimited, Unprocessable
from kernel.feature import PortKey
from kernel.jobs import Job, Tick
from kernel.objects import ObjectStore
from kernel.outbox import Outbox
from kernel.rpc.registry import Access, Caller, MethodRegistry
from storage import uploads as rows
from storage.database import Database
from storage.events import Executor
from storage.retention import delete_batched
from storage.uploads import UploadRow

log = logging.getLogger("rtc.uploads")

HOUR = timedelta(hours=1)
# Who may upload for each purpose (None: any account).
ROLES: Mapping[str, frozenset[str] | None] = {
    "profilePicture": None,
    "workingProof": frozenset({"provider"}),
    "certificate": frozenset({"provider"}),
    "reportEvidence": frozenset({"customer", "provider"}),
}
PROFILE_PURPOSES = ("profilePicture", "workingProof", "certificate")
PUBLIC_ROUTE = "/public/uploads"
_PRUNE_BATCH = 200
_PRUNE_BATCHES = 50
_GRANTS_KEPT = timedelta(days=1)


class Uploads:
    """The uploads of every account: what the HTTP port receives and serves, and what
    profiles, listings and reports attach and show."""

    def __init__(
        self,
        db: Database,
        store: ObjectStore,
        signer: UploadSigner,
        clock: Clock,
        outbox: Outbox,
        settings: UploadSettings,
    ) -> None:
        self._db = db
        self.store = store
        self.signer = signer
        self.clock = clock
        self._outbox = outbox
        self.settings = settings
        self.public_url = settings.public_url

    def register(self, registry: MethodRegistry) -> None:
        add = registry.add
        add("uploads.create", self.create, params=CreateUpload, result=UploadTicket)
        add(
            "admin.uploads.list",
            self.list_for_admin,
            params=UserFiles,
            result=ProfileFiles,
            access=Access.ADMIN,
        )

    # --- uploads.create ------------------------------------------------------------------

    async def create(self, caller: Caller, params: CreateUpload) -> UploadTicket:
        """A URL to send one image to (one HTTP PUT of the file's bytes, before
        ``expiresAt``); its answer names the upload, which me.update,
        providers.profile.update or reports.create then attach. Profile pictures: any
        account; working proofs and the certificate: providers; report evidence:
        customers and providers."""
        user_id = caller.require_user()
        allowed = ROLES[params.purpose]
        if allowed is not None and caller.role not in allowed:
            raise Forbidden(
                f"{params.purpose} uploads are for {', '.join(sorted(allowed))}",
                reason="purpose_not_allowed",
                field="purpose",
            )
        s = self.settings
        if params.content_type.lower() not in IMAGE_TYPES:
            raise Unprocessable(
                "only JPEG, PNG, WebP and GIF images are taken",
                reason="unsupported_type",
                field="contentType",
            )
        if params.bytes > s.max_bytes:
            raise Unprocessable(
                f"at most {s.max_bytes} bytes",
                reason="too_large",
                field="bytes",
                maxBytes=s.max_bytes,
            )
        now = self.clock.now()
        upload_id = uuid.uuid4()
        expires = now + timedelta(seconds=s.url_ttl)
        staged = self._outbox.stage()
        async with self._db.transaction() as conn:
            count, oldest = await rows.grants_since(conn, user_id, now - HOUR)
            if count >= s.per_hour and oldest is not None:
                raise RateLimited(
                    f"at most {s.per_hour} uploads per hour",
                    retry_after=max((oldest + HOUR - now).total_seconds(), 0.001),
                    reason="uploads_per_hour",
                    limit=s.per_hour,
                )
            used = await rows.stored_bytes(conn, user_id)
            if used >= s.quota_bytes:
                raise Unprocessable(
                    "your uploads take all the room you have: remove some first",
                    reason="upload_quota",
                    usedBytes=used,
                    quotaBytes=s.quota_bytes,
                )
            await rows.issue(conn, upload_id, user_id, params.purpose, now, expires)
            stamp = int(expires.timestamp())
            ticket = UploadTicket(
                upload_id=upload_id,
                url=self.public_url + self.signer.put_path(upload_id, stamp),
                headers={"Content-Type": params.content_type},
                max_bytes=s.max_bytes,
                expires_at=datetime.fromtimestamp(stamp, UTC),
            )
            staged.answer(ticket)
            await staged.write(conn)
        return ticket

    # --- Attaching (for me.update, providers.profile.update, reports.create) -----------

    async def replace(
        self,
        conn: Executor,
        owner_id: int,
        purpose: str,
        upload_ids: Sequence[UUID],
        *,
        field: str,
        report_id: int | None = None,
    ) -> list[UploadRow]:
        """In the caller's transaction: make ``upload_ids`` the owner's uploads in use
        for ``purpose`` (or a report's evidence), replacing those in use now. Each must
        be the owner's, of that purpose, processed (ready) and not attached elsewhere;
        otherwise nothing changes and the error names ``field``. Returns the uploads
        taken out of use: pass them to :meth:`discard` after the commit."""
        now = self.clock.now()
        wanted, current = await rows.lock_for_attach(conn, owner_id, purpose, upload_ids, report_id)
        found = {r.id: r for r in wanted}
        in_slot = {r.id for r in current}
        for i, upload_id in enumerate(upload_ids):
            where = field if len(upload_ids) == 1 and not field.endswith("Ids") else f"{field}.{i}"
            row = found.get(upload_id)
            if row is None or row.owner_id != owner_id or row.state == "deleted":
                raise NotFound("no such upload", field=where)
            if row.purpose != purpose:
                raise Unprocessable(
                    f"this upload is a {row.purpose}, not a {purpose}",
                    reason="upload_wrong_purpose",
                    field=where,
                )
            if row.id in in_slot:
                continue  # in use here already: kept
            if row.state == "attached":
                raise Unprocessable(
                    "this upload is attached elsewhere already", reason="upload_in_use", field=where
                )
            if row.state == "pending":
                raise Unprocessable(
                    "this upload's file was not received yet",
                    reason="upload_not_ready",
                    field=where,
                )
            if row.expires_at is not None and row.expires_at <= now:
                raise Unprocessable(
                    "this upload expired: upload the file again",
                    reason="upload_expired",
                    field=where,
                )
        removed = [r for r in current if r.id not in set(upload_ids)]
        if removed:  # first, so the one-picture index never sees two
            await rows.mark_deleted(conn, [r.id for r in removed])
        if upload_ids:
            await rows.attach(conn, upload_ids, now, report_id)
        return removed

    async def discard(self, removed: Sequence[UploadRow]) -> None:
        """After the commit that took them out of use: delete the uploads' objects,
        then their rows. What fails here is left to the prune (the rows say deleted)."""
        if not removed:
            return
        done = []
        for row in removed:
            try:
                for key in (row.image_key, row.thumb_key):
                    if key is not None:
                        await self.store.delete(key)
            except Exception:
                log.exception(
                    "upload objects not deleted; the prune will", extra={"upload": str(row.id)}
                )
                continue
            done.append(row.id)
        if done:
            await rows.remove(self._db, done)

    # --- Reading -------------------------------------------------------------------------

    async def profile_files(self, owner_id: int) -> dict[str, list[UploadRow]]:
        """The owner's images in use by purpose (picture, proofs, certificate)."""
        found: dict[str, list[UploadRow]] = {p: [] for p in PROFILE_PURPOSES}
        for row in await rows.attached_of(self._db, [owner_id], PROFILE_PURPOSES):
            found[row.purpose].append(row)
        return found

    async def files_view(self, owner_id: int, viewer: int) -> ProfileFiles:
        files = await self.profile_files(owner_id)
        return ProfileFiles(
            picture=self.first_view(files["profilePicture"], viewer),
            working_proofs=[self.view(r, viewer) for r in files["workingProof"]],
            certificate=self.first_view(files["certificate"], viewer),
        )

    async def listing_files(
        self, listing_ids: Sequence[int], purposes: Sequence[str] = ("profilePicture",)
    ) -> dict[int, list[UploadRow]]:
        """listing id → its provider's public images of ``purposes`` (pictures; proofs
        only of verified providers), in one query for a page of listings."""
        found: dict[int, list[UploadRow]] = {}
        for listing_id, row in await rows.of_listings(self._db, listing_ids, purposes):
            if is_public(row):
                found.setdefault(listing_id, []).append(row)
        return found

    async def evidence(self, report_ids: Sequence[int]) -> dict[int, list[UploadRow]]:
        """report id → its evidence, in one query for a page of reports."""
        found: dict[int, list[UploadRow]] = {}
        for row in await rows.of_reports(self._db, report_ids):
            assert row.report_id is not None
            found.setdefault(row.report_id, []).append(row)
        return found

    def view(self, row: UploadRow, viewer: int | None) -> UploadView:
        """``row`` as ``viewer`` may reach it: public stable URLs where the file is
        public, else links signed for the viewer (None: public only)."""
        if is_public(row):
            base = f"{self.public_url}{PUBLIC_ROUTE}/{row.id}"
            url, thumb, expires = f"{base}/image", f"{base}/thumb", None
        else:
            if viewer is None:
                raise ValueError("a private upload needs a viewer")
            stamp = int(self.clock.now().timestamp() + self.settings.link_ttl)
            url, thumb = (
                self.public_url + self.signer.file_path(FileGrant(row.id, v, stamp, viewer))
                for v in VARIANTS
            )
            expires = datetime.fromtimestamp(stamp, UTC)
        return UploadView(
            upload_id=row.id,
            purpose=row.purpose,
            content_type=row.content_type or "",
            width=row.width or 0,
            height=row.height or 0,
            bytes=row.bytes,
            url=url,
            thumbnail_url=thumb,
            thumbnail_width=row.thumb_width or 0,
            thumbnail_height=row.thumb_height or 0,
            expires_at=expires,
        )

    def first_view(self, found: Sequence[UploadRow], viewer: int | None) -> UploadView | None:
        return self.view(found[0], viewer) if found else None

    async def list_for_admin(self, caller: Caller, params: UserFiles) -> ProfileFiles:
        """An account's images in use: its profile picture, a provider's working proofs
        and certificate (verified or not), as links for the asking admin."""
        if not await rows.account_exists(self._db, params.user_id):
            raise NotFound("no such account", field="userId")
        return await self.files_view(params.user_id, caller.require_user())

    # --- Closing an account (a step of api.erasure) ------------------------------------

    async def close_account(self, closing: Closing) -> None:
        """Every upload of the account goes: marked deleted in the erasure's
        transaction, its objects deleted after the commit."""
        removed = await rows.close_account(closing.conn, closing.user_id)
        if removed:
            closing.after_commit(lambda: self.discard(removed))

    # --- The prune (job uploads.prune) ---------------------------------------------------

    async def prune(self, job: Job[Tick]) -> None:
        removed = await self.prune_now()
        if removed:
            log.info("uploads pruned", extra={"uploads": removed})

    async def prune_now(self) -> int:
        """Remove uploads never attached past their time, and the objects and rows of
        deleted ones (what a discard could not finish); forget old grants. How many
        uploads were removed."""
        now = self.clock.now()
        total = 0
        for _ in range(_PRUNE_BATCHES):
            batch = await rows.prunable(self._db, now, _PRUNE_BATCH)
            if not batch:
                break
            gone = []
            for row in batch:
                try:
                    for key in (row.image_key, row.thumb_key):
                        if key is not None:
                            await self.store.delete(key)
                except Exception:
                    log.exception("upload objects not deleted", extra={"upload": str(row.id)})
                    continue
                gone.append(row.id)
            if not gone:
                break
            total += await rows.remove_expired(self._db, gone, now)
            if len(batch) < _PRUNE_BATCH:
                break
        await delete_batched(self._db, "upload_grants", "granted_at < $1", now - _GRANTS_KEPT)
        return total


def is_public(row: UploadRow) -> bool:
    """Whether anyone may fetch the file without a link: a provider's profile picture,
    a verified provider's working proofs and certificate, while in use."""
    if row.state != "attached" or row.owner_role != "provider":
        return False
    return row.purpose == "profilePicture" or (
        row.purpose in ("workingProof", "certificate") and row.owner_verified
    )


#: Uploads, for the features that attach and show them (installed after uploads).
UPLOADS: PortKey[Uploads] = PortKey("uploads")
