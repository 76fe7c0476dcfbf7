"""The ``[uploads]`` settings section: what an uploaded image may be, how fast and how
much one user may upload, and the links."""

from __future__ import annotations

from pydantic import Field, field_validator

from kernel.settings import Section, public_url
from kernel.signing import link_secret

MIB = 1024 * 1024


class UploadSettings(Section):
    """Uploaded images (api/uploads/): profile pictures, proofs, report evidence."""

    # Largest file one upload may send, bytes (5 MiB). A larger Content-Length is
    # refused at once (413); a body that runs past it is cut off there.
    max_bytes: int = Field(5 * MIB, ge=1024, le=100 * MIB)
    # Pixels (width x height) an image may declare; more is refused from its header
    # (too_many_pixels), before decoding: decompression bombs. At most Pillow's own limit.
    max_pixels: int = Field(40_000_000, ge=10_000, le=89_478_485)
    # Longest side of the stored image and of its thumbnail, pixels.
    max_side: int = Field(2048, ge=64, le=8192)
    thumb_side: int = Field(320, ge=16, le=1024)
    # JPEG / WebP quality of the re-encoded images (1-95).
    quality: int = Field(85, ge=1, le=95)
    # Images decoded and encoded at once per instance (CPU-bound, in worker threads);
    # more wait their turn.
    workers: int = Field(2, ge=1, le=64)
    # Seconds an upload URL stays valid (it is good for one request).
    url_ttl: float = Field(600.0, ge=10, le=86400)
    # Seconds the one request may take to send its body; then it is cut off (408).
    receive_timeout: float = Field(120.0, ge=1, le=3600)
    # Seconds an uploaded image waits to be attached (me.update,
    # providers.profile.update, reports.create) before it is pruned.
    unattached_ttl: float = Field(86400.0, ge=60)
    # Uploads (uploads.create) one user may start per rolling hour.
    per_hour: int = Field(30, ge=1, le=10000)
    # Bytes of stored uploads (images and thumbnails) one user may have (200 MiB).
    quota_bytes: int = Field(200 * MIB, ge=0)
    # Seconds a private file's link (evidence, proofs for admins, a customer's own
    # picture) stays valid.
    link_ttl: float = Field(900.0, ge=10, le=86400)
    # The key that signs upload URLs and links (HMAC-SHA256), the same on every
    # instance. Empty: one generated and kept in the database.
    link_secret: str = ""
    # Where the HTTP port is reached from outside, for upload URLs and links, e.g.
    # "https://media.example.com". Empty: "http://127.0.0.1:<http port>".
    public_url: str = ""
    # Seconds clients and caches may keep a public picture (its URL changes when the
    # picture changes).
    public_max_age: int = Field(604800, ge=0, le=31536000)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, url: str) -> str:
        return public_url(url)

    @field_validator("link_secret")
    @classmethod
    def _link_secret(cls, secret: str) -> str:
        return link_secret(secret)
