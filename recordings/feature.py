"""Recorded calls as a feature: the server's own media path, plugged into calls through
:data:`signalling.ports.CALLS`; ``recordings.*``, the signed download on the HTTP port,
the mixing and retention jobs; the files in the shared object store
(:data:`kernel.objects.OBJECTS`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kernel.feature import Feature, Kit
from kernel.objects import OBJECTS
from kernel.settings import ConfigError
from recordings.events import RECORDING_FAILED, RECORDING_READY
from recordings.host import MediaHost
from recordings.jobs import MIX, RETENTION
from recordings.links import LinkSigner
from recordings.metrics import RecordingMetrics
from recordings.service import RecordingService
from recordings.settings import RecordingSettings
from recordings.store import adopt_former_folder, recording_store
from signalling.ports import CALLS


class RecordingsFeature(Feature):
    name = "recordings"
    settings = RecordingSettings

    async def install(self, kit: Kit) -> None:
        s = kit.settings(RecordingSettings)
        if not s.public_url and kit.production:
            raise ConfigError(
                "recordings.public_url is required in production: the https address"
                " download links point at (the HTTP port as clients reach it)"
            )
        metrics = RecordingMetrics(kit.metrics)
        objects = kit.port(OBJECTS)
        try:
            self.store = recording_store(objects, own_dir=Path(s.dir) if s.dir else None)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if not s.dir:
            await asyncio.to_thread(adopt_former_folder, kit.data_dir / "recordings", objects)
        self.media = MediaHost(
            kit.db,
            self.store,
            kit.outbox,
            kit.devices.instance_id,
            kit.signals,
            kit.clock,
            s,
            metrics,
            jobs=kit.jobs,
            calls=kit.port(CALLS),
        )
        self.service = RecordingService(
            kit.db,
            self.store,
            LinkSigner(await kit.secret("recording_links", s.link_secret)),
            kit.clock,
            s,
            metrics,
            public_url=s.public_url,
        )
        self.service.register(kit.methods)
        kit.event(RECORDING_READY)
        kit.event(RECORDING_FAILED)
        kit.route("GET", RecordingService.DOWNLOAD_PATH, self.service.download)
        kit.job(MIX, self.service.mix)
        kit.job(RETENTION, self.service.retention)
        kit.every(3600.0, RETENTION)
        kit.task(self.media.run)
        kit.on_start(self._started)
        kit.on_stop(self.media.close)
        self._kit = kit

    async def _started(self) -> None:
        if not self.service.public_url:
            self.service.public_url = self._kit.http_url()
