"""A user's saved addresses (methods ``addresses.*``).

Only the owner lists or changes an address: every query names the caller as owner,
so another user's address id answers ``not_found``, exactly like a missing one (its
existence is not disclosed). At most :data:`MAX_ADDRESSES` per user (reference 8.6).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, model_validator

from kernel.errors import NotFound, Unprocessable
from kernel.feature import Feature, Kit
from kernel.rpc.registry import (
    Caller,
    IdempotentParams,
    MethodRegistry,
    Params,
    Result,
)
from kernel.rpc.text import Line, Paragraphs, refuse_nulls
from storage import addresses
from storage.database import Database

MAX_ADDRESSES = 3
MAX_PAGE = 50
# Customers book at their addresses; providers keep their home address. Admins have none.
ROLES = frozenset({"customer", "provider"})

AddressType = Literal["home", "office", "other"]
State = Annotated[str, Line(2, 100)]
City = Annotated[str, Line(2, 100)]
FullAddress = Annotated[str, Paragraphs(10, 500)]
# Indian PIN codes: 6 digits, the first (the postal region) 1-9.
Pincode = Annotated[str, Field(pattern=r"^[1-9][0-9]{5}$")]
AddressId = Annotated[int, Field(ge=1, le=2**63 - 1)]


class ListAddresses(Params):
    after: AddressId | None = Field(None, description="nextAfter of the previous page")
    limit: int = Field(20, ge=1, le=MAX_PAGE)


class CreateAddress(IdempotentParams):
    type: AddressType = "home"
    state: State
    city: City | None = None
    full_address: FullAddress
    pincode: Pincode | None = None


class UpdateAddress(Params):
    id: AddressId
    type: AddressType | None = None
    state: State | None = None
    city: City | None = Field(None, description="null removes it")
    full_address: FullAddress | None = None
    pincode: Pincode | None = Field(None, description="null removes it")

    @model_validator(mode="after")
    def _required_fields_not_null(self) -> UpdateAddress:
        refuse_nulls(self, ("type", "state", "full_address"))
        return self


class AddressRef(Params):
    id: AddressId


class Address(Result):
    id: int
    type: str
    state: str
    city: str | None
    full_address: str
    pincode: str | None
    created_at: datetime
    updated_at: datetime


class AddressPage(Result):
    addresses: list[Address]
    next_after: int | None = Field(description="pass as after for the next page; null: no more")


class Deleted(Result):
    ok: bool = True


def _address(row: addresses.AddressRow) -> Address:
    return Address(
        id=row.id,
        type=row.type,
        state=row.state,
        city=row.city,
        full_address=row.full_address,
        pincode=row.pincode,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


class AddressService:
    def __init__(self, db: Database) -> None:
        self._db = db

    def register(self, registry: MethodRegistry) -> None:
        add = registry.add
        add("addresses.list", self.list, params=ListAddresses, result=AddressPage, roles=ROLES)
        add("addresses.create", self.create, params=CreateAddress, result=Address, roles=ROLES)
        add("addresses.update", self.update, params=UpdateAddress, result=Address, roles=ROLES)
        add("addresses.delete", self.delete, params=AddressRef, result=Deleted, roles=ROLES)

    async def list(self, caller: Caller, params: ListAddresses) -> AddressPage:
        """The caller's addresses, oldest first."""
        rows = await addresses.list_addresses(
            self._db, caller.require_user(), after_id=params.after, limit=params.limit + 1
        )
        more = len(rows) > params.limit
        rows = rows[: params.limit]
        return AddressPage(
            addresses=[_address(r) for r in rows], next_after=rows[-1].id if more else None
        )

    async def create(self, caller: Caller, params: CreateAddress) -> Address:
        """Save a new address (at most 3 per user)."""
        user_id = caller.require_user()
        async with self._db.transaction() as conn:
            # The user's row lock makes two concurrent creates count one after the other.
            if await addresses.lock_owner_and_count(conn, user_id) >= MAX_ADDRESSES:
                raise Unprocessable(
                    f"at most {MAX_ADDRESSES} addresses per account; delete one first",
                    reason="address_limit",
                    limit=MAX_ADDRESSES,
                )
            row = await addresses.create_address(
                conn,
                user_id,
                type=params.type,
                state=params.state,
                city=params.city,
                full_address=params.full_address,
                pincode=params.pincode,
            )
        return _address(row)

    async def update(self, caller: Caller, params: UpdateAddress) -> Address:
        """Change some fields of one of the caller's addresses (the fields sent)."""
        changes = params.model_dump(include=params.model_fields_set - {"id"})
        row = await addresses.update_address(self._db, caller.require_user(), params.id, changes)
        if row is None:
            raise NotFound("no such address")
        return _address(row)

    async def delete(self, caller: Caller, params: AddressRef) -> Deleted:
        """Delete one of the caller's addresses."""
        if not await addresses.delete_address(self._db, caller.require_user(), params.id):
            raise NotFound("no such address")
        return Deleted()


class AddressesFeature(Feature):
    """Saved addresses: ``addresses.*``."""

    name = "addresses"

    async def install(self, kit: Kit) -> None:
        AddressService(kit.db).register(kit.methods)
