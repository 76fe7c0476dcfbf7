"""A user's own profile (methods ``me.*``): name, email, picture.

Rules kept from the original (reference 1.2, 8.6): the full name may really change at
most twice per account (setting a first name, or sending the same one, is no change);
an email belongs to one account, whatever its case. The picture is an upload
(:mod:`api.uploads`) of purpose ``profilePicture``; replacing or removing it deletes
the old one's files.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, Field

from api.uploads.models import UploadId, UploadView
from api.uploads.service import UPLOADS, Uploads
from kernel.errors import Conflict, NotFound, Unprocessable
from kernel.feature import Feature, Kit
from kernel.rpc.registry import Access, Caller, Empty, MethodRegistry, Params, Result
from kernel.rpc.text import FullName, Trimmed
from storage import admin, profiles
from storage.database import Database
from storage.errors import UniqueViolation
from storage.uploads import UploadRow

MAX_NAME_CHANGES = 2

# RFC 5321/5322 addr-spec, dot-atom form only (no quoted local parts, no IP literals):
# what mail providers hand out. Local part at most 64 octets (RFC 5321 4.5.3.1.1).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(
    rf"^(?=[^@]{{1,64}}@){_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})*\.[A-Za-z]{{2,63}}$"
)


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise ValueError("not a valid email address")
    local, domain = value.rsplit("@", 1)
    return f"{local}@{domain.lower()}"


Email = Annotated[str, Trimmed(6, 254), AfterValidator(_email)]


class UpdateProfile(Params):
    full_name: FullName | None = None
    email: Email | None = Field(None, description="null removes the email")
    picture_upload_id: UploadId | None = Field(
        None,
        description="an upload of purpose profilePicture (uploads.create) to show;"
        " null removes the picture",
    )


class Profile(Result):
    id: int
    phone: str
    role: str
    full_name: str | None
    email: str | None
    is_verified: bool
    name_change_count: int
    name_changes_left: int
    created_at: datetime
    picture: UploadView | None = Field(description="the profile picture; null: none")


def next_name(current: str | None, wanted: str, changes: int) -> tuple[str, int]:
    """The name and change count after asking for ``wanted`` (pure; raises when refused)."""
    if current is None or wanted == current:
        return wanted, changes
    if changes >= MAX_NAME_CHANGES:
        raise Unprocessable(
            f"the full name can be changed at most {MAX_NAME_CHANGES} times",
            reason="name_change_limit",
            field="fullName",
        )
    return wanted, changes + 1


def _profile(row: profiles.ProfileRow, picture: UploadView | None) -> Profile:
    return Profile(
        id=row.id,
        phone=row.phone,
        role=row.role,
        full_name=row.full_name,
        email=row.email,
        is_verified=row.is_verified,
        name_change_count=row.name_change_count,
        name_changes_left=max(0, MAX_NAME_CHANGES - row.name_change_count),
        created_at=row.created_at,
        picture=picture,
    )


class ProfileService:
    def __init__(self, db: Database, uploads: Uploads) -> None:
        self._db = db
        self._uploads = uploads

    def register(self, registry: MethodRegistry) -> None:
        # Any role: customers, providers and admins each own exactly their profile.
        registry.add("me.get", self.get, params=Empty, result=Profile, access=Access.USER)
        registry.add(
            "me.update", self.update, params=UpdateProfile, result=Profile, access=Access.USER
        )

    async def get(self, caller: Caller, params: Empty) -> Profile:
        """The caller's own profile."""
        row = await profiles.get_profile(self._db, caller.require_user())
        if row is None:
            raise NotFound("no such account")
        return _profile(row, await self._picture(row.id))

    async def _picture(self, user_id: int) -> UploadView | None:
        files = await self._uploads.profile_files(user_id)
        return self._uploads.first_view(files["profilePicture"], user_id)

    async def update(self, caller: Caller, params: UpdateProfile) -> Profile:
        """Change the full name (at most twice), the email (null removes it) and/or the
        picture (an upload of purpose profilePicture; null removes it, and a replaced
        or removed picture's files are deleted).

        A retry is harmless: the same name again is no change and is not counted.
        """
        user_id = caller.require_user()
        given = params.model_fields_set
        removed: list[UploadRow] = []
        try:
            async with self._db.transaction() as conn:
                row = await profiles.lock_profile(conn, user_id)
                if row is None:
                    raise NotFound("no such account")
                name, changes = row.full_name, row.name_change_count
                if "full_name" in given and params.full_name is not None:
                    name, changes = next_name(row.full_name, params.full_name, changes)
                email = params.email if "email" in given else row.email
                if email is not None and email != row.email:
                    if await admin.email_blocked(conn, email):  # its account was removed
                        raise Conflict(
                            "this email may not be used", reason="email_blocked", field="email"
                        )
                row = await profiles.save_profile(conn, user_id, name, email, changes)
                if "picture_upload_id" in given:
                    wanted = [] if params.picture_upload_id is None else [params.picture_upload_id]
                    removed = await self._uploads.replace(
                        conn, user_id, "profilePicture", wanted, field="pictureUploadId"
                    )
        except UniqueViolation:
            raise Conflict(
                "this email belongs to another account", reason="email_taken", field="email"
            ) from None
        await self._uploads.discard(removed)
        return _profile(row, await self._picture(user_id))


class ProfileFeature(Feature):
    """Every account's own profile: ``me.*``."""

    name = "profile"

    async def install(self, kit: Kit) -> None:
        ProfileService(kit.db, kit.port(UPLOADS)).register(kit.methods)
