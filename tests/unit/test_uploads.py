"""Uploads without a server: what a file is by its bytes, what it becomes (metadata
gone, orientation applied, bounded), the bombs and broken files refused, the signed
URLs."""

from __future__ import annotations

import io
from pathlib import Path
from uuid import uuid4

import pytest
from PIL import Image

from api.uploads import images
from api.uploads.links import FileGrant, LinkRefused, UploadSigner
from tests.pictures import GPS_IFD, jpeg_with_gps, png_declaring

LIMITS = images.Limits(max_pixels=40_000_000, max_side=2048, thumb_side=320, quality=85)


def picture(path: Path) -> Image.Image:
    return Image.open(io.BytesIO(path.read_bytes()))


def run(tmp_path: Path, data: bytes, limits: images.Limits = LIMITS) -> images.Encoded:
    source = tmp_path / "in"
    source.write_bytes(data)
    kind = images.sniff(data[: images.HEAD_BYTES])
    return images.process(source, kind, tmp_path / "image", tmp_path / "thumb", limits)


# --- What a file is --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "png"),
        (b"GIF89a\x01\x00", "gif"),
        (b"GIF87a\x01\x00", "gif"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "webp"),
    ],
)
def test_images_are_named_by_their_first_bytes(head: bytes, kind: str) -> None:
    assert images.sniff(head) == kind


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (b"#!/bin/sh\nrm -rf /\n", "not_an_image"),
        (b"<!DOCTYPE html><html><script>", "not_an_image"),
        (b"%PDF-1.7\n", "not_an_image"),
        (b"PK\x03\x04", "not_an_image"),
        (b"", "not_an_image"),
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", "not_an_image"),
        (b"BM\x36\x00\x00\x00", "unsupported_type"),
        (b"II*\x00\x08\x00", "unsupported_type"),
        (b"\x00\x00\x00\x18ftypheic\x00", "unsupported_type"),
        (b"\x00\x00\x00\x1cftypavif\x00", "unsupported_type"),
        (b'  <svg xmlns="http://www.w3.org/2000/svg">', "unsupported_type"),
        (b'<?xml version="1.0"?><svg>', "unsupported_type"),
    ],
)
def test_anything_else_is_refused_with_its_reason(head: bytes, reason: str) -> None:
    with pytest.raises(images.Rejected) as refused:
        images.sniff(head)
    assert refused.value.reason == reason


# --- What it becomes --------------------------------------------------------------------


def test_gps_exif_comments_and_profile_do_not_survive(tmp_path: Path) -> None:
    original = jpeg_with_gps()
    for marker in (b"Exif", b"secret note", b"ICC_PROFILE", b"http://ns.adobe", b"GPSLatitude"):
        assert marker in original
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(GPS_IFD)
    encoded = run(tmp_path, original)
    assert (encoded.content_type, encoded.width, encoded.height) == ("image/jpeg", 1200, 800)
    for name in ("image", "thumb"):
        data = (tmp_path / name).read_bytes()
        for marker in (
            b"Exif",
            b"secret note",
            b"ICC_PROFILE",
            b"PhoneMaker",
            b"ns.adobe",
            b"GPSLatitude",
        ):
            assert marker not in data
        clean = Image.open(io.BytesIO(data))
        assert not clean.getexif()
        assert clean.getexif().get_ifd(GPS_IFD) == {}
        assert "icc_profile" not in clean.info


def test_the_exif_orientation_is_applied(tmp_path: Path) -> None:
    encoded = run(tmp_path, jpeg_with_gps(1200, 800, orientation=6))  # rotated 90° clockwise
    assert (encoded.width, encoded.height) == (800, 1200)
    clean = picture(tmp_path / "image").convert("RGB")
    # The blue corner, top-left as stored, is top-right once turned.
    r, g, b = clean.getpixel((780, 20))  # type: ignore[misc]
    assert b > 150 and r < 100


def test_large_images_are_bounded_with_a_thumbnail(tmp_path: Path) -> None:
    out = io.BytesIO()
    Image.new("RGB", (5000, 2500), (10, 200, 10)).save(out, "PNG")
    encoded = run(tmp_path, out.getvalue())
    assert (encoded.width, encoded.height) == (2048, 1024)
    assert (encoded.thumb_width, encoded.thumb_height) == (320, 160)
    assert picture(tmp_path / "thumb").size == (320, 160)


def test_transparency_is_kept_as_webp_and_an_unused_alpha_is_dropped(tmp_path: Path) -> None:
    see_through = io.BytesIO()
    Image.new("RGBA", (64, 32), (255, 0, 0, 100)).save(see_through, "PNG")
    assert run(tmp_path, see_through.getvalue()).content_type == "image/webp"
    assert picture(tmp_path / "image").mode == "RGBA"
    opaque = io.BytesIO()
    Image.new("RGBA", (64, 32), (255, 0, 0, 255)).save(opaque, "PNG")
    assert run(tmp_path, opaque.getvalue()).content_type == "image/jpeg"


def test_a_gif_gives_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (40, 30), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert run(tmp_path, out.getvalue()).content_type == "image/jpeg"
    r, g, b = picture(tmp_path / "image").convert("RGB").getpixel((20, 15))  # type: ignore[misc]
    assert r > 200 and b < 60


@pytest.mark.parametrize("size", [(20000, 20000), (7000, 7000), (100_000, 500)])
def test_decompression_bombs_are_refused_from_the_header(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    with pytest.raises(images.Rejected) as refused:
        run(tmp_path, png_declaring(*size))
    assert refused.value.reason == "too_many_pixels"
    assert not (tmp_path / "image").exists()


def test_broken_files_are_corrupt(tmp_path: Path) -> None:
    whole = jpeg_with_gps()
    for data in (whole[: len(whole) // 3], png_declaring(10, 10), b"GIF89a" + b"\0" * 10):
        with pytest.raises(images.Rejected) as refused:
            run(tmp_path, data)
        assert refused.value.reason == "corrupt"


def test_the_sniffed_format_alone_decodes(tmp_path: Path) -> None:
    """A file that starts like a PNG but is a JPEG is not decoded as the JPEG it is."""
    data = b"\x89PNG\r\n\x1a\n" + jpeg_with_gps()
    with pytest.raises(images.Rejected) as refused:
        run(tmp_path, data)
    assert refused.value.reason == "corrupt"


# --- Signed URLs --------------------------------------------------------------------------


def query_of(path: str) -> dict[str, str]:
    return dict(p.split("=", 1) for p in path.split("?", 1)[1].split("&"))


def test_an_upload_url_opens_only_its_upload_until_it_expires() -> None:
    signer = UploadSigner(b"k" * 32)
    upload = uuid4()
    path = signer.put_path(upload, 1000)
    assert path.startswith(f"/uploads/{upload}?")
    assert signer.verify_put(str(upload), query_of(path), 999.0) == upload
    with pytest.raises(LinkRefused) as expired:
        signer.verify_put(str(upload), query_of(path), 1000.0)
    assert expired.value.reason == "expired"
    for upload_id, query in (
        (str(uuid4()), query_of(path)),  # another upload
        (str(upload), {**query_of(path), "exp": "2000"}),  # a later expiry
        (str(upload), {"exp": "1000"}),  # no signature
        ("not-a-uuid", query_of(path)),
    ):
        with pytest.raises(LinkRefused) as refused:
            signer.verify_put(upload_id, query, 0.0)
        assert refused.value.reason == "invalid_link"
    other = UploadSigner(b"j" * 32)
    with pytest.raises(LinkRefused):
        other.verify_put(str(upload), query_of(path), 0.0)


def test_a_file_link_names_its_upload_variant_and_user() -> None:
    signer = UploadSigner(b"k" * 32)
    grant = FileGrant(uuid4(), "thumb", 1000, 42)
    path = signer.file_path(grant)
    assert path.startswith(f"/uploads/{grant.upload_id}/thumb?")
    assert signer.verify_file(str(grant.upload_id), "thumb", query_of(path), 10.0) == grant
    for variant, query in (
        ("image", query_of(path)),
        ("thumb", {**query_of(path), "u": "43"}),
    ):
        with pytest.raises(LinkRefused):
            signer.verify_file(str(grant.upload_id), variant, query, 10.0)
    with pytest.raises(LinkRefused) as expired:
        signer.verify_file(str(grant.upload_id), "thumb", query_of(path), 1000.0)
    assert expired.value.reason == "expired"
    with pytest.raises(ValueError):
        UploadSigner(b"short")
