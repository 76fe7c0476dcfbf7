"""Uploads as a feature: ``uploads.create``, ``admin.uploads.list``, the upload and
download routes on the HTTP port, the ``uploads.prune`` job, a closing step of account
erasure, and the :data:`~api.uploads.service.UPLOADS` port that profiles, providers
and reports attach and show images through."""

from __future__ import annotations

from api.erasure import ERASURE
from api.uploads.links import UploadSigner
from api.uploads.receiver import FILE_PATH, PUBLIC_PATH, PUT_PATH, UploadMetrics, UploadRoutes
from api.uploads.service import UPLOADS, Uploads
from api.uploads.settings import UploadSettings
from kernel.feature import Feature, Kit
from kernel.jobs import JobSpec, Tick
from kernel.objects import OBJECTS
from kernel.settings import ConfigError

# Unattached uploads past their time, deleted ones' leftovers, old grants.
PRUNE = JobSpec("uploads.prune", Tick)


class UploadsFeature(Feature):
    name = "uploads"
    settings = UploadSettings

    async def install(self, kit: Kit) -> None:
        s = kit.settings(UploadSettings)
        if not s.public_url and kit.production:
            raise ConfigError(
                "uploads.public_url is required in production: the https address upload"
                " URLs and image links point at (the HTTP port as clients reach it)"
            )
        self.uploads = Uploads(
            kit.db,
            kit.port(OBJECTS),
            UploadSigner(await kit.secret("upload_links", s.link_secret)),
            kit.clock,
            kit.outbox,
            s,
        )
        self.uploads.register(kit.methods)
        routes = UploadRoutes(self.uploads, kit.db, UploadMetrics(kit.metrics))
        kit.route("PUT", PUT_PATH, routes.put)
        kit.route("GET", FILE_PATH, routes.private)
        kit.route("GET", PUBLIC_PATH, routes.public)
        kit.job(PRUNE, self.uploads.prune)
        kit.every(600.0, PRUNE)
        kit.port(ERASURE).step(self.uploads.close_account)
        kit.provide(UPLOADS, self.uploads)
        kit.on_start(self._started)
        self._kit = kit

    async def _started(self) -> None:
        if not self.uploads.public_url:
            self.uploads.public_url = self._kit.http_url()
