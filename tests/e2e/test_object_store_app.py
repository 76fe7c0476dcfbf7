"""The object store inside a running server: built from [objects] before the features
install, given to them on the OBJECTS port, swept by the core's hourly job, and a
bucket it cannot use stopping start-up."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.session import get_session

from kernel.jobs import Tick
from kernel.objects import OBJECTS
from rtc_server.app import App
from rtc_server.config import ConfigError
from rtc_server.objects import SWEEP_OBJECTS
from storage.objects.s3 import S3Store
from tests.s3_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY
from tests.servers import settings_for
from tests.waiting import until

from .conftest import AppFactory


async def test_the_core_gives_features_its_store_and_sweeps_what_a_crash_left(
    make_app: AppFactory, s3_objects: dict[str, Any]
) -> None:
    app = await make_app(objects=s3_objects)
    store = app.objects
    assert isinstance(store, S3Store) and app.kit.port(OBJECTS) is store
    assert store.prefix == s3_objects["prefix"]
    # What an instance killed mid-upload leaves: a scratch file and an upload never
    # completed (moto dates every upload 2010: it is a day old).
    scratch = store.temp_path("uploads/x.jpg")
    scratch.write_bytes(b"half")
    a_day_ago = time.time() - 2 * 86400
    os.utime(scratch, (a_day_ago, a_day_ago))
    async with get_session().create_client(
        "s3",
        endpoint_url=s3_objects["endpoint_url"],
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    ) as bucket:
        name = s3_objects["prefix"] + "uploads/y.jpg"
        await bucket.create_multipart_upload(Bucket=s3_objects["bucket"], Key=name)
        assert app.db is not None
        await app.jobs.enqueue(SWEEP_OBJECTS, Tick())
        db = app.db
        await until(lambda: db.fetchval("SELECT count(*) = 0 FROM jobs"))
        listed = await bucket.list_multipart_uploads(
            Bucket=s3_objects["bucket"], Prefix=s3_objects["prefix"]
        )
    assert listed.get("Uploads", []) == []
    assert not scratch.exists()
    assert app.metrics.jobs_finished.labels("objects.sweep", "done")._value.get() >= 1


async def test_a_bucket_the_server_cannot_use_stops_start_up(
    db_dsn: str, tmp_path: Path, s3_objects: dict[str, Any]
) -> None:
    settings = settings_for(db_dsn, tmp_path, objects={**s3_objects, "bucket": "not-made"})
    app = App(settings)
    try:
        with pytest.raises(ConfigError, match="objects.bucket 'not-made'.*no such bucket"):
            await app.start()
    finally:
        await app.stop()
