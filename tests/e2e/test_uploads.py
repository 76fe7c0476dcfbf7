"""Uploads end to end: a real server, real HTTP requests (aiohttp) to the upload URL
and the image links, the local object store under the test's data folder.

What a file is goes by its bytes; what is stored has no metadata; a refused file
leaves nothing (no row, no object, no scratch file); the cap holds while streaming,
with the server's memory flat; URLs are single-use and expire; the hourly rate and the
quota hold; only the owner's ready uploads of the right purpose attach, once; who sees
what; replacing, removing and deleting the account remove the objects.
"""

from __future__ import annotations

import asyncio
import io
import resource
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp
import pytest
from PIL import Image

from api.uploads.feature import UploadsFeature
from kernel.clock import FakeClock
from rtc_server.app import App
from rtc_server.client import RtcClient
from tests.pictures import (
    GPS_IFD,
    HTML_PAGE,
    SHELL_SCRIPT,
    jpeg_with_gps,
    noise_jpeg,
    png,
    png_declaring,
)

from .admins import login_admin
from .conftest import AppFactory, Clients, e164
from .market import key, later, market, refused

MIB = 1024 * 1024


# --- Helpers -----------------------------------------------------------------------------


async def ticket(client: RtcClient, purpose: str, size: int = 1000, **extra: Any) -> Any:
    return await client.call(
        "uploads.create",
        {
            "idempotencyKey": key(),
            "purpose": purpose,
            "contentType": extra.pop("content_type", "image/jpeg"),
            "bytes": size,
            **extra,
        },
    )


async def put(url: str, body: Any, **headers: str) -> tuple[int, Any]:
    """PUT ``body`` to an upload URL: (status, JSON answer)."""
    if isinstance(body, bytes):
        body = io.BytesIO(body)  # aiohttp sends it in chunks (a large bytes warns)
    async with aiohttp.ClientSession() as http, http.put(url, data=body, headers=headers) as r:
        return r.status, await r.json()


async def upload(client: RtcClient, purpose: str, data: bytes, **headers: str) -> Any:
    """An upload of ``data`` that the server takes (its answer)."""
    t = await ticket(client, purpose, len(data))
    status, answer = await put(t["url"], data, **headers)
    assert status == 201, answer
    return answer


async def get(url: str, **headers: str) -> tuple[int, bytes, Any]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as r:
        return r.status, await r.read(), r.headers


def objects_root(app: App) -> Path:
    return app.settings.data_dir / "objects"


async def stored_keys(app: App, upload_id: str) -> list[str]:
    assert app.db is not None
    row = await app.db.fetchrow(
        "SELECT image_key, thumb_key FROM uploads WHERE id = $1", UUID(upload_id)
    )
    return [] if row is None else [row["image_key"], row["thumb_key"]]


async def object_exists(app: App, key: str) -> bool:
    assert app.objects is not None
    return await app.objects.stat(key) is not None


def scratch_files(app: App) -> list[Path]:
    return [p for p in (objects_root(app) / ".tmp").rglob("*") if p.is_file()]


async def upload_rows(app: App, owner: int) -> int:
    assert app.db is not None
    count: int = await app.db.fetchval("SELECT count(*) FROM uploads WHERE owner_id = $1", owner)
    return count


def vm_rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
async def uploading(app: App, clients: Clients) -> tuple[RtcClient, int]:
    client, tokens = await clients.login()
    return client, tokens["user"]["id"]


# --- What a file is, what it becomes ---------------------------------------------------


async def test_a_photo_comes_back_without_its_gps_and_becomes_the_picture(
    app: App, uploading: tuple[RtcClient, int]
) -> None:
    client, user_id = uploading
    t = await ticket(client, "profilePicture", 100_000)
    assert t["method"] == "PUT" and t["maxBytes"] == 5 * MIB
    assert t["url"].startswith(f"http://127.0.0.1:{app.http.port}/uploads/{t['uploadId']}?")
    status, answer = await put(t["url"], jpeg_with_gps(3000, 2000), **t["headers"])
    assert status == 201, answer
    assert answer["uploadId"] == t["uploadId"] and answer["purpose"] == "profilePicture"
    assert (answer["contentType"], answer["width"], answer["height"]) == ("image/jpeg", 2048, 1365)
    assert (answer["thumbnailWidth"], answer["thumbnailHeight"]) == (320, 213)

    for url in (answer["url"], answer["thumbnailUrl"]):  # the owner's own, by signed link
        code, data, headers = await get(url)
        assert code == 200 and headers["Content-Type"] == "image/jpeg"
        assert headers["Cache-Control"].startswith("private")
        for marker in (b"Exif", b"GPSLatitude", b"ns.adobe", b"ICC_PROFILE", b"secret note"):
            assert marker not in data
        image = Image.open(io.BytesIO(data))
        assert not image.getexif() and image.getexif().get_ifd(GPS_IFD) == {}

    assert (await client.call("me.get"))["picture"] is None  # not attached yet
    me = await client.call("me.update", {"pictureUploadId": t["uploadId"]})
    assert me["picture"]["uploadId"] == t["uploadId"]
    assert (await client.call("me.get"))["picture"]["width"] == 2048
    keys = await stored_keys(app, t["uploadId"])
    when = app.clock.now()
    base = f"uploads/profilePicture/{when:%Y}/{when:%m}/{t['uploadId']}"
    assert keys == [base, f"{base}.thumb"]
    assert all([await object_exists(app, k) for k in keys])

    # Removing the picture deletes its files and its row.
    assert (await client.call("me.update", {"pictureUploadId": None}))["picture"] is None
    assert not any([await object_exists(app, k) for k in keys])
    assert await upload_rows(app, user_id) == 0
    assert (await get(answer["url"]))[0] == 410


async def test_files_are_what_their_bytes_say(app: App, uploading: tuple[RtcClient, int]) -> None:
    client, user_id = uploading
    # A PNG called a JPEG (content type and file name) is taken for the PNG it is.
    t = await ticket(client, "profilePicture", content_type="image/jpeg")
    status, answer = await put(
        t["url"] + "&name=photo.jpg",  # extra query words change nothing
        png(64, 48, (0, 160, 0, 120)),
        **{"Content-Type": "image/jpeg", "Content-Disposition": 'filename="photo.jpg"'},
    )
    assert status == 201 and answer["contentType"] == "image/webp"  # it had transparency
    # A script or a web page named .png is refused, and leaves nothing behind.
    for body, reason in ((SHELL_SCRIPT, "not_an_image"), (HTML_PAGE, "not_an_image")):
        t = await ticket(client, "profilePicture", content_type="image/png")
        status, answer = await put(
            t["url"], body, **{"Content-Type": "image/png", "Content-Disposition": "x.png"}
        )
        assert (status, answer["reason"]) == (415, reason), answer
        assert "image" in answer["error"]
    # A format we do not take, a broken file, a decompression bomb.
    bmp = io.BytesIO()
    Image.new("RGB", (8, 8)).save(bmp, "BMP")
    whole = jpeg_with_gps()
    for body, expected in (
        (bmp.getvalue(), (415, "unsupported_type")),
        (whole[: len(whole) // 3], (422, "corrupt")),
        (png_declaring(20000, 20000), (413, "too_many_pixels")),
        (png_declaring(8000, 6000), (413, "too_many_pixels")),
        (b"", (415, "not_an_image")),
    ):
        t = await ticket(client, "profilePicture")
        status, answer = await put(t["url"], body)
        assert (status, answer["reason"]) == expected, answer
    assert await upload_rows(app, user_id) == 1  # the PNG, alone
    assert scratch_files(app) == []


async def test_the_cap_holds_while_streaming_and_memory_stays_flat(
    app: App, uploading: tuple[RtcClient, int]
) -> None:
    client, user_id = uploading
    # A Content-Length over the cap: refused before a byte is read.
    t = await ticket(client, "profilePicture")
    status, answer = await put(t["url"], b"\xff\xd8\xff" + b"\0" * (5 * MIB + 1))
    assert (status, answer["reason"]) == (413, "too_large")

    # 20 MB sent chunked from a generator (no length): cut off at 5 MiB + 1 byte.
    sent = 0

    async def twenty_megabytes() -> AsyncIterator[bytes]:
        nonlocal sent
        chunk = b"\xff\xd8\xff\xe0" + bytes(64 * 1024 - 4)
        for _ in range(20 * 16):
            sent += len(chunk)
            yield chunk

    peak = before = vm_rss_kib()
    max_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, vm_rss_kib())
            await asyncio.sleep(0.005)

    sampler = asyncio.create_task(sample())
    t = await ticket(client, "profilePicture")
    try:
        status, answer = await put(t["url"], twenty_megabytes())
        assert (status, answer["reason"]) == (413, "too_large")
    except aiohttp.ClientError:
        pass  # the connection closed under the body still being sent: cut off as well
    finally:
        sampler.cancel()
    grown_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - max_before
    assert sent < 20 * MIB  # the server stopped taking it
    assert peak - before < 8 * 1024, f"RSS grew {peak - before} KiB"
    assert grown_max < 8 * 1024
    assert await upload_rows(app, user_id) == 0
    assert scratch_files(app) == []
    # The URL was used: it opens nothing now.
    status, answer = await put(t["url"], png())
    assert (status, answer["reason"]) == (409, "used")


async def test_urls_are_single_use_signed_and_expire(
    app: App, uploading: tuple[RtcClient, int], clock: FakeClock
) -> None:
    client, _ = uploading
    t = await ticket(client, "profilePicture")
    assert (await put(t["url"], png()))[0] == 201
    status, answer = await put(t["url"], png())
    assert (status, answer["reason"]) == (409, "used")

    t = await ticket(client, "profilePicture")
    forged = t["url"].replace(t["uploadId"][:8], "00000000")
    assert (await put(forged, png()))[1]["reason"] == "invalid_link"
    later_expiry = t["url"].replace("exp=", "exp=9")
    status, answer = await put(later_expiry, png())
    assert (status, answer["reason"]) == (403, "invalid_link")
    clock.advance(601)
    status, answer = await put(t["url"], png())
    assert (status, answer["reason"]) == (410, "expired")


async def test_the_hourly_rate_and_the_quota(
    make_app: AppFactory, code_log: Any, clock: FakeClock
) -> None:
    app = await make_app(uploads={"per_hour": 3, "quota_bytes": 60_000})
    clients = Clients(app, code_log)
    try:
        client, _ = await clients.login()
        first = await upload(client, "profilePicture", noise_jpeg(30_000, seed=1))
        assert 15_000 < first["bytes"] < 30_000  # and its thumbnail as much
        # The second would pass the quota: refused, nothing kept.
        t = await ticket(client, "profilePicture")
        status, answer = await put(t["url"], noise_jpeg(30_000, seed=2))
        assert (status, answer["reason"]) == (409, "quota_exceeded")
        # The third start of the hour is the last.
        await ticket(client, "profilePicture")
        error = await refused(client, "uploads.create", await _create_params())
        assert (error.name, error.data["reason"]) == ("rate_limited", "uploads_per_hour")
        assert error.data["retryAfterMs"] > 0
        clock.advance(3601)
        await ticket(client, "profilePicture")  # a new hour
        # At the quota, no new upload starts.
        assert app.db is not None
        await app.db.execute(
            "UPDATE uploads SET bytes = 60000 WHERE id = $1", UUID(first["uploadId"])
        )
        error = await refused(client, "uploads.create", await _create_params())
        assert (error.name, error.data["reason"]) == ("unprocessable", "upload_quota")
    finally:
        await clients.close()


async def test_uploads_finishing_at_once_cannot_both_fit_where_one_would(
    make_app: AppFactory, code_log: Any
) -> None:
    """Both pass the early check (nothing stored yet); the one that records its files
    second, under the owner's lock, finds the first's and is refused."""
    app = await make_app(uploads={"quota_bytes": 60_000})
    clients = Clients(app, code_log)
    try:
        client, tokens = await clients.login()
        tickets = [await ticket(client, "profilePicture") for _ in range(4)]
        answers = await asyncio.gather(
            *(put(t["url"], noise_jpeg(30_000, seed=i)) for i, t in enumerate(tickets))
        )
        statuses = sorted(status for status, _ in answers)
        assert statuses == [201, 409, 409, 409], answers
        assert {a["reason"] for status, a in answers if status == 409} == {"quota_exceeded"}
        assert app.db is not None
        stored = await app.db.fetchval(
            "SELECT coalesce(sum(bytes + thumb_bytes), 0) FROM uploads"
            " WHERE owner_id = $1 AND state IN ('ready', 'attached')",
            tokens["user"]["id"],
        )
        assert 0 < stored <= 60_000
        assert scratch_files(app) == []
    finally:
        await clients.close()


async def _create_params() -> dict[str, Any]:
    return {
        "idempotencyKey": key(),
        "purpose": "profilePicture",
        "contentType": "image/jpeg",
        "bytes": 1000,
    }


async def test_what_uploads_create_refuses(app: App, clients: Clients) -> None:
    customer, _ = await clients.login()
    admin, _ = await login_admin(clients)
    params = await _create_params()
    for who, changes, name, reason in (
        (customer, {"purpose": "workingProof"}, "forbidden", "purpose_not_allowed"),
        (customer, {"purpose": "certificate"}, "forbidden", "purpose_not_allowed"),
        (admin, {"purpose": "reportEvidence"}, "forbidden", "purpose_not_allowed"),
        (customer, {"contentType": "image/heic"}, "unprocessable", "unsupported_type"),
        (customer, {"bytes": 5 * MIB + 1}, "unprocessable", "too_large"),
    ):
        error = await refused(who, "uploads.create", {**params, **changes, "idempotencyKey": key()})
        assert (error.name, error.data["reason"]) == (name, reason)
    error = await refused(customer, "uploads.create", {**params, "purpose": "avatar"})
    assert error.name == "invalid_params"
    assert (await ticket(admin, "profilePicture"))["uploadId"]  # any account has a picture


# --- Attaching ---------------------------------------------------------------------------


async def test_only_the_owners_ready_uploads_of_the_purpose_attach_once(
    app: App, clients: Clients, clock: FakeClock
) -> None:
    m = await market(clients, app)
    other, _ = await clients.login()
    others = await upload(other, "profilePicture", png())
    evidence = await upload(m.customer, "reportEvidence", png())
    pending = await ticket(m.customer, "profilePicture")
    mine = await upload(m.customer, "profilePicture", png())

    async def picture_refused(upload_id: str) -> tuple[str, str | None, str | None]:
        error = await refused(m.customer, "me.update", {"pictureUploadId": upload_id})
        return error.name, error.data.get("reason"), error.data.get("field")

    assert await picture_refused(others["uploadId"]) == ("not_found", None, "pictureUploadId")
    assert await picture_refused(evidence["uploadId"]) == (
        "unprocessable",
        "upload_wrong_purpose",
        "pictureUploadId",
    )
    assert await picture_refused(pending["uploadId"]) == (
        "unprocessable",
        "upload_not_ready",
        "pictureUploadId",
    )
    assert await picture_refused("6a1f7c1e-0000-4000-8000-000000000000") == (
        "not_found",
        None,
        "pictureUploadId",
    )
    # Refused: nothing changed (the email sent with it is not saved either).
    error = await refused(
        m.customer, "me.update", {"email": "a@example.in", "pictureUploadId": others["uploadId"]}
    )
    assert error.name == "not_found"
    assert (await m.customer.call("me.get"))["email"] is None

    # Attached once: the same picture again is no change; evidence of one report cannot
    # be another's.
    await m.customer.call("me.update", {"pictureUploadId": mine["uploadId"]})
    again = await m.customer.call("me.update", {"pictureUploadId": mine["uploadId"]})
    assert again["picture"]["uploadId"] == mine["uploadId"]
    first = await m.customer.call("bookings.create", m.booking(later(app, 24)))
    second = await m.customer.call("bookings.create", m.booking(later(app, 48)))
    report = {"reason": "Rude", "description": "Was rude on the phone to me."}
    await m.customer.call(
        "reports.create",
        {
            "idempotencyKey": key(),
            "bookingId": first["id"],
            **report,
            "evidenceUploadIds": [evidence["uploadId"]],
        },
    )
    error = await refused(
        m.customer,
        "reports.create",
        {
            "idempotencyKey": key(),
            "bookingId": second["id"],
            **report,
            "evidenceUploadIds": [evidence["uploadId"]],
        },
    )
    assert (error.data["reason"], error.data["field"]) == ("upload_in_use", "evidenceUploadIds.0")
    error = await refused(
        m.customer,
        "reports.create",
        {
            "idempotencyKey": key(),
            "bookingId": second["id"],
            **report,
            "evidenceUploadIds": [mine["uploadId"]] * 2,
        },
    )
    assert error.name == "invalid_params"
    # The refused report was not made.
    assert len((await m.customer.call("reports.mine"))["reports"]) == 1

    # An upload left unattached expires, and the prune takes it (row and objects).
    late = await upload(m.customer, "profilePicture", png())
    keys = await stored_keys(app, late["uploadId"])
    clock.advance(86401)
    error = await refused(m.customer, "me.update", {"pictureUploadId": late["uploadId"]})
    assert error.data["reason"] == "upload_expired"
    assert await app.feature(UploadsFeature).uploads.prune_now() >= 2  # late, pending
    assert await stored_keys(app, late["uploadId"]) == []
    assert not any([await object_exists(app, k) for k in keys])
    assert (await m.customer.call("me.get"))["picture"]["uploadId"] == mine["uploadId"]


async def test_a_providers_proofs_and_certificate(app: App, clients: Clients) -> None:
    m = await market(clients, app)
    proofs = [await upload(m.provider, "workingProof", png(40, 30)) for _ in range(3)]
    ids = [p["uploadId"] for p in proofs]
    certificate = await upload(m.provider, "certificate", png(50, 50))
    profile = await m.provider.call(
        "providers.profile.update",
        {
            "yearsOfExperience": 6,
            "workingProofUploadIds": ids,
            "certificateUploadId": certificate["uploadId"],
        },
    )
    assert [p["uploadId"] for p in profile["workingProofs"]] == ids
    assert profile["certificate"]["uploadId"] == certificate["uploadId"]
    assert profile["yearsOfExperience"] == 6

    # Keeping two, dropping one: the dropped one's files go; the rest stays as it was.
    dropped = await stored_keys(app, ids[1])
    profile = await m.provider.call(
        "providers.profile.update", {"workingProofUploadIds": [ids[0], ids[2]]}
    )
    assert [p["uploadId"] for p in profile["workingProofs"]] == [ids[0], ids[2]]
    assert profile["certificate"]["uploadId"] == certificate["uploadId"]
    assert not any([await object_exists(app, k) for k in dropped])
    assert [
        p["uploadId"] for p in (await m.provider.call("providers.profile.get"))["workingProofs"]
    ] == [ids[0], ids[2]]

    eleven = await refused(
        m.provider, "providers.profile.update", {"workingProofUploadIds": [ids[0]] * 11}
    )
    assert eleven.name == "invalid_params"
    error = await refused(m.provider, "providers.profile.update", {"workingProofUploadIds": None})
    assert error.name == "invalid_params"
    wrong = await refused(m.provider, "providers.profile.update", {"certificateUploadId": ids[0]})
    assert wrong.data["reason"] == "upload_wrong_purpose"
    assert wrong.data["field"] == "certificateUploadId"
    gone = await m.provider.call("providers.profile.update", {"certificateUploadId": None})
    assert gone["certificate"] is None


# --- Who sees what -----------------------------------------------------------------------


async def test_a_providers_picture_is_public_with_caching(app: App, clients: Clients) -> None:
    m = await market(clients, app)
    picture = await upload(m.provider, "profilePicture", jpeg_with_gps())
    await m.provider.call("me.update", {"pictureUploadId": picture["uploadId"]})
    anonymous = await clients.anonymous()
    service_id = (await anonymous.call("providers.get", {"providerServiceId": m.listing}))[
        "serviceId"
    ]
    listed = (await anonymous.call("providers.search", {"serviceId": service_id}))["providers"]
    shown = next(p for p in listed if p["providerServiceId"] == m.listing)["picture"]
    assert shown["uploadId"] == picture["uploadId"] and shown["expiresAt"] is None
    details = await anonymous.call("providers.get", {"providerServiceId": m.listing})
    assert details["picture"]["url"] == shown["url"]
    featured = (await anonymous.call("providers.featured", {}))["providers"]
    assert next(p for p in featured if p["providerServiceId"] == m.listing)["picture"] == shown
    assert "/public/uploads/" in shown["url"] and "sig=" not in shown["url"]

    code, data, headers = await get(shown["url"])  # no login, no signature
    assert code == 200 and data[:3] == b"\xff\xd8\xff" and b"Exif" not in data
    assert headers["Cache-Control"].startswith("public, max-age=604800")
    etag = headers["ETag"]
    code, _, _ = await get(shown["url"], **{"If-None-Match": etag})
    assert code == 304
    code, thumb, _ = await get(shown["thumbnailUrl"])
    assert code == 200 and Image.open(io.BytesIO(thumb)).size == (320, 213)

    # A new picture: a new URL; the old one is gone with its files.
    old_keys = await stored_keys(app, picture["uploadId"])
    newer = await upload(m.provider, "profilePicture", png(100, 100))
    await m.provider.call("me.update", {"pictureUploadId": newer["uploadId"]})
    details = await anonymous.call("providers.get", {"providerServiceId": m.listing})
    assert details["picture"]["url"] != shown["url"]
    assert (await get(details["picture"]["url"]))[0] == 200
    assert (await get(shown["url"]))[0] == 404
    assert not any([await object_exists(app, k) for k in old_keys])

    # A customer's picture is not public: its id on the public route finds nothing.
    mine = await upload(m.customer, "profilePicture", png())
    own = (await m.customer.call("me.update", {"pictureUploadId": mine["uploadId"]}))["picture"]
    assert "sig=" in own["url"] and own["expiresAt"] is not None
    public = own["url"].split("?")[0].replace("/uploads/", "/public/uploads/")
    assert (await get(public))[0] == 404


async def test_proofs_show_on_the_listing_once_the_provider_is_verified(
    app: App, clients: Clients
) -> None:
    m = await market(clients, app)
    admin, _ = await login_admin(clients)
    proof = await upload(m.provider, "workingProof", png(80, 60))
    certificate = await upload(m.provider, "certificate", png(60, 80))
    await m.provider.call(
        "providers.profile.update",
        {
            "workingProofUploadIds": [proof["uploadId"]],
            "certificateUploadId": certificate["uploadId"],
        },
    )
    anonymous = await clients.anonymous()
    listing = await anonymous.call("providers.get", {"providerServiceId": m.listing})
    assert [p["uploadId"] for p in listing["workingProofs"]] == [proof["uploadId"]]
    public_url = listing["workingProofs"][0]["url"]
    assert (await get(public_url))[0] == 200

    await admin.call("admin.users.verify", {"userId": m.provider_id, "verified": False})
    listing = await anonymous.call("providers.get", {"providerServiceId": m.listing})
    assert listing["workingProofs"] == [] and listing["certificate"] is None
    assert (await get(public_url))[0] == 404
    # Admins see them all the same, by links signed for them.
    files = await admin.call("admin.uploads.list", {"userId": m.provider_id})
    assert [p["uploadId"] for p in files["workingProofs"]] == [proof["uploadId"]]
    assert files["certificate"]["uploadId"] == certificate["uploadId"]
    assert "sig=" in files["certificate"]["url"]
    assert (await get(files["certificate"]["url"]))[0] == 200
    # The provider too (their own).
    own = await m.provider.call("providers.profile.get")
    assert (await get(own["workingProofs"][0]["url"]))[0] == 200
    error = await refused(admin, "admin.uploads.list", {"userId": 2**40})
    assert error.name == "not_found"


async def test_report_evidence_is_for_admins_with_ranges(
    app: App, clients: Clients, clock: FakeClock
) -> None:
    m = await market(clients, app)
    admin, admin_tokens = await login_admin(clients)
    booking = await m.customer.call("bookings.create", m.booking(later(app, 24)))
    shots = [await upload(m.customer, "reportEvidence", jpeg_with_gps(600, 400)) for _ in "ab"]
    report = await m.customer.call(
        "reports.create",
        {
            "idempotencyKey": key(),
            "bookingId": booking["id"],
            "reason": "Damage",
            "description": "Broke the sink while fixing the tap.",
            "evidenceUploadIds": [s["uploadId"] for s in shots],
        },
    )
    assert "evidence" not in report  # the reporter's view
    listed = (await admin.call("admin.reports.list", {"limit": 5}))["reports"]
    evidence = next(r for r in listed if r["id"] == report["id"])["evidence"]
    assert [e["uploadId"] for e in evidence] == [s["uploadId"] for s in shots]
    link = evidence[0]["url"]
    assert f"u={admin_tokens['user']['id']}" in link

    code, whole, headers = await get(link)
    assert code == 200 and headers["Cache-Control"].startswith("private")
    code, part, headers = await get(link, Range="bytes=10-109")
    assert code == 206 and part == whole[10:110]
    assert headers["Content-Range"] == f"bytes 10-109/{len(whole)}"
    code, tail, _ = await get(link, Range="bytes=-50")
    assert code == 206 and tail == whole[-50:]
    assert (await get(link, Range=f"bytes={len(whole)}-"))[0] == 416

    # Nobody else gets in: not as another user, not on the public route.
    other_user = link.replace(f"u={admin_tokens['user']['id']}", f"u={m.customer_id}")
    assert (await get(other_user))[0] == 403
    public = link.split("?")[0].replace("/uploads/", "/public/uploads/")
    assert (await get(public))[0] == 404
    clock.advance(901)
    code, body, _ = await get(link)
    assert code == 410 and b"expired" in body


async def test_deleting_the_account_removes_its_files(
    app: App, clients: Clients, clock: FakeClock
) -> None:
    m = await market(clients, app)
    picture = await upload(m.customer, "profilePicture", png())
    await m.customer.call("me.update", {"pictureUploadId": picture["uploadId"]})
    loose = await upload(m.customer, "reportEvidence", png())
    booking = await m.customer.call("bookings.create", m.booking(later(app, 24)))
    evidence = await upload(m.customer, "reportEvidence", png())
    await m.customer.call(
        "reports.create",
        {
            "idempotencyKey": key(),
            "bookingId": booking["id"],
            "reason": "Late",
            "description": "Came three hours late.",
            "evidenceUploadIds": [evidence["uploadId"]],
        },
    )
    keys = [k for u in (picture, loose, evidence) for k in await stored_keys(app, u["uploadId"])]
    assert len(keys) == 6 and all([await object_exists(app, k) for k in keys])
    other = await upload(m.provider, "profilePicture", png())  # someone else's stays

    clock.advance(31)
    phone = m.customer_tokens["user"]["phone"]
    await m.customer.call("auth.requestOtp", {"phone": phone, "role": "customer"})
    code = clients.code_log.last(e164(phone))
    assert await m.customer.call("me.delete", {"code": code}) == {"ok": True}
    assert not any([await object_exists(app, k) for k in keys])
    assert app.db is not None
    left = await app.db.fetchval(
        "SELECT count(*) FROM uploads WHERE id = ANY($1::uuid[])",
        [UUID(u["uploadId"]) for u in (picture, loose, evidence)],
    )
    assert left == 0
    assert all([await object_exists(app, k) for k in await stored_keys(app, other["uploadId"])])
