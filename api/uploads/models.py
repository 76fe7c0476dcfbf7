"""The wire models of uploads: ``uploads.create`` and its ticket, the view of an
uploaded image that profiles, listings, reports and admins carry."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field

from kernel.rpc.registry import IdempotentParams, Params, Result

Purpose = Literal["profilePicture", "workingProof", "certificate", "reportEvidence"]
UploadId = Annotated[UUID, Field(description="an uploadId of uploads.create")]
Id = Annotated[int, Field(ge=1, le=2**63 - 1)]

#: The content types uploads.create takes (the file's bytes decide what it is).
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif")


class CreateUpload(IdempotentParams):
    purpose: Purpose
    content_type: str = Field(
        min_length=3,
        max_length=100,
        pattern=r"^[A-Za-z0-9.+-]+/[A-Za-z0-9.+-]+$",
        description="what the client believes the file is (image/jpeg, image/png,"
        " image/webp or image/gif); the server goes by the file's bytes",
    )
    bytes: int = Field(ge=1, le=2**40, description="the file's size in bytes")


class UploadTicket(Result):
    """Where and how to send the file: one HTTP request, before ``expiresAt``."""

    upload_id: UUID
    url: str = Field(description="send the file's bytes here, once")
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str] = Field(description="headers to send with it")
    max_bytes: int = Field(description="a larger body is refused (413)")
    expires_at: datetime


class UploadView(Result):
    """An uploaded image as stored: re-encoded, metadata stripped, bounded in size."""

    upload_id: UUID
    purpose: str
    content_type: str = Field(description="image/jpeg, or image/webp (with transparency)")
    width: int
    height: int
    bytes: int
    url: str
    thumbnail_url: str
    thumbnail_width: int
    thumbnail_height: int
    expires_at: datetime | None = Field(
        description="when the URLs stop working (signed links); null: public, stable URLs"
        " (they change when the image is replaced)"
    )


class ProfileFiles(Result):
    """An account's images in use: its picture, and a provider's proofs."""

    picture: UploadView | None
    working_proofs: list[UploadView]
    certificate: UploadView | None


class UserFiles(Params):
    user_id: Id
