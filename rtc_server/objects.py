"""The object store of this instance, built from the ``[objects]`` settings and
provided to the features on the :data:`kernel.objects.OBJECTS` port (by
:meth:`rtc_server.app.App.prepare`, before any feature installs)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from kernel.jobs import JobSpec, Tick
from kernel.objects import ObjectStore
from rtc_server.config import ConfigError, CoreSettings, ObjectSettings
from storage.objects import LocalStore, ObjectStoreError

if TYPE_CHECKING:
    from storage.objects.s3 import S3Config

log = logging.getLogger("rtc.objects")

# The core's hourly job: scratch files and unfinished uploads older than
# SCRATCH_MAX_AGE are leftovers of a crash (an upload or a recorded call lasts less).
SWEEP_OBJECTS = JobSpec("objects.sweep", Tick)
SCRATCH_MAX_AGE = 86400.0


def folder(settings: CoreSettings) -> Path:
    return Path(settings.objects.dir) if settings.objects.dir else settings.data_dir / "objects"


async def open_object_store(settings: CoreSettings) -> ObjectStore:
    """The configured store; :class:`ConfigError` naming the settings if the bucket
    cannot be reached (start-up stops: an instance that cannot store must not serve)."""
    s = settings.objects
    root = folder(settings)
    if s.backend == "local":
        if settings.server.environment == "production":
            log.warning(
                "objects.backend is local: with more than one instance, objects.dir (%s)"
                " must be one folder every instance mounts (or set objects.backend ="
                ' "s3"), else an instance cannot serve or mix what another stored',
                root,
            )
        return LocalStore(root)
    from storage.objects.s3 import S3Store  # loads botocore and aiohttp: only when used

    try:
        store = await S3Store.open(_s3_config(s), root / ".tmp")
    except ObjectStoreError as exc:
        where = s.endpoint_url or "AWS"
        raise ConfigError(
            f"objects.bucket {s.bucket!r} at {where} cannot be used ({exc}): check"
            " objects.bucket, objects.endpoint_url, objects.region and the credentials"
            " (objects.access_key_id / RTC_OBJECTS__SECRET_ACCESS_KEY or the AWS chain)"
        ) from exc
    log.info(
        "object store: s3",
        extra={"bucket": s.bucket, "prefix": s.prefix, "endpoint": s.endpoint_url or "aws"},
    )
    return store


def _s3_config(s: ObjectSettings) -> S3Config:
    from storage.objects.s3 import S3Config

    return S3Config(
        bucket=s.bucket,
        prefix=s.prefix,
        endpoint_url=s.endpoint_url or None,
        region=s.region or None,
        access_key_id=s.access_key_id or None,
        secret_access_key=s.secret_access_key or None,
        addressing_style=s.addressing_style,
    )
