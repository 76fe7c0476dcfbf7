"""What an uploaded file may be, and what it becomes: pure functions over local files,
run in a worker thread (:mod:`api.uploads.receiver`).

:func:`sniff` names the image by its first bytes (JPEG, PNG, GIF, WebP: the magic
numbers of their specifications), never by the client's content type or file name;
anything else is refused, ``unsupported_type`` for a known image format we do not take
(BMP, TIFF, HEIC/AVIF, ICO, PSD, JPEG XL, SVG), ``not_an_image`` for the rest.

:func:`process` decodes with Pillow, restricted to the sniffed format, after checking
the declared size against a pixel cap (a decompression bomb is refused from its header,
before any pixel is decoded), takes a GIF's or animation's first frame, applies the
EXIF orientation, converts to sRGB, and re-encodes from the pixels alone: no EXIF, GPS,
XMP, ICC profile or comment survives. Opaque images become JPEG, images with
transparency WebP; both bounded to ``max_side`` pixels, plus a thumbnail.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageCms, ImageOps

# Bytes :func:`sniff` needs to tell the formats apart.
HEAD_BYTES = 64

_FORMATS = {"jpeg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP"}
# ISO base media file brands of HEIF, HEIC and AVIF images.
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif")
# Pillow raises these for a file it cannot decode (truncated, inconsistent, invalid).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError)


class Rejected(Exception):
    """Why a file is not taken: ``reason`` is the stable name clients see."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Limits:
    max_pixels: int  # declared width x height above this: refused (too_many_pixels)
    max_side: int  # the stored image's longest side, at most
    thumb_side: int  # the thumbnail's longest side, at most
    quality: int  # JPEG and WebP quality


@dataclass(frozen=True, slots=True)
class Encoded:
    """What :func:`process` wrote."""

    content_type: str  # of both files: image/jpeg or image/webp
    extension: str  # "jpg" or "webp"
    width: int
    height: int
    thumb_width: int
    thumb_height: int


def sniff(head: bytes) -> str:
    """The image format of a file starting with ``head``: "jpeg", "png", "gif" or
    "webp"; :class:`Rejected` otherwise."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if _other_image(head):
        raise Rejected(
            "unsupported_type", "this image format is not taken: send JPEG, PNG, WebP or GIF"
        )
    raise Rejected("not_an_image", "the file is not an image (JPEG, PNG, WebP or GIF)")


def _other_image(head: bytes) -> bool:
    text = head.lstrip().lower()
    return (
        head.startswith((b"BM", b"II*\x00", b"MM\x00*", b"\x00\x00\x01\x00", b"8BPS", b"\xff\x0a"))
        or head.startswith(b"\x00\x00\x00\x0cJXL ")
        or (head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS)
        or text.startswith(b"<svg")
        or (text.startswith(b"<?xml") and b"<svg" in text)
    )


def process(source: Path, kind: str, image_out: Path, thumb_out: Path, limits: Limits) -> Encoded:
    """Decode ``source`` (a file :func:`sniff` named ``kind``) and write the clean image
    to ``image_out`` and its thumbnail to ``thumb_out``; :class:`Rejected` if it cannot
    be taken."""
    try:
        opened = Image.open(source, formats=[_FORMATS[kind]])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as bomb:
        raise Rejected("too_many_pixels", "the image declares too many pixels") from bomb
    except _DECODE_ERRORS as broken:
        raise Rejected("corrupt", "the image could not be decoded") from broken
    try:
        picture = _bounded(_decode(opened, kind, limits), limits.max_side)
        picture.info.clear()  # nothing of the original's metadata reaches the encoder
        thumb = _bounded(picture, limits.thumb_side)
        thumb.info.clear()
        content_type, extension = _save(picture, image_out, limits.quality)
        _save(thumb, thumb_out, limits.quality)
        return Encoded(content_type, extension, *picture.size, *thumb.size)
    finally:
        opened.close()


def _decode(opened: Image.Image, kind: str, limits: Limits) -> Image.Image:
    """The first frame's pixels, upright, as RGB (or RGBA) in sRGB."""
    width, height = opened.size
    if width < 1 or height < 1:
        raise Rejected("corrupt", "the image has no pixels")
    if width * height > limits.max_pixels:
        raise Rejected(
            "too_many_pixels", f"{width}x{height} is more than {limits.max_pixels:,} pixels"
        )
    try:
        if kind == "jpeg":  # decode at a reduced scale when that is enough (DCT scaling)
            opened.draft(None, (limits.max_side, limits.max_side))
        opened.load()  # the first frame only
        icc = opened.info.get("icc_profile")
        _orient(opened)
        return _rgb(opened, icc if isinstance(icc, bytes) else None)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as bomb:
        raise Rejected("too_many_pixels", "the image declares too many pixels") from bomb
    except _DECODE_ERRORS as broken:
        raise Rejected("corrupt", "the image could not be decoded") from broken


def _bounded(image: Image.Image, side: int) -> Image.Image:
    """``image`` with its longest side at most ``side`` (itself if it is small enough)."""
    width, height = image.size
    if max(width, height) <= side:
        return image
    scale = side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _orient(image: Image.Image) -> None:
    """Apply the EXIF orientation; an unreadable EXIF block is ignored (it is dropped)."""
    try:
        ImageOps.exif_transpose(image, in_place=True)
    except _DECODE_ERRORS + (KeyError, TypeError):
        pass


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _rgb(image: Image.Image, icc: bytes | None) -> Image.Image:
    """The pixels as RGB, or RGBA where some are transparent, in sRGB."""
    if _has_alpha(image):
        converted = image.convert("RGBA")
        if converted.getchannel("A").getextrema()[0] == 255:  # declared, never used
            converted = converted.convert("RGB")
    else:
        converted = image if image.mode == "RGB" else image.convert("RGB")
    if icc and image.mode in ("RGB", "RGBA", "P", "L", "LA"):
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            srgb = ImageCms.createProfile("sRGB")
            in_srgb = ImageCms.profileToProfile(converted, source, srgb)
            if in_srgb is not None:
                converted = in_srgb
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
            pass  # a profile littleCMS cannot use: keep the values as they are
    return converted


def _save(image: Image.Image, path: Path, quality: int) -> tuple[str, str]:
    if image.mode == "RGBA":
        image.save(path, "WEBP", quality=quality, method=4)
        return "image/webp", "webp"
    # Baseline, Huffman tables optimised: progressive encoding costs about twice the
    # CPU of all the rest for a few percent fewer bytes.
    image.save(path, "JPEG", quality=quality, optimize=True)
    return "image/jpeg", "jpg"
