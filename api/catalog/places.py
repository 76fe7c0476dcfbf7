"""Place names: the names that mean one city or state (Bengaluru, Bangalore), which
``providers.search`` matches alike (methods ``admin.places.*``).

A group is a canonical name and its aliases. Rules: an alias belongs to one group; a
canonical name is never an alias (groups do not chain), so a name already canonical
is refused as an alias until its own aliases are removed; a group with no alias left
is gone. Names are compared by key (lower case, dots and hyphens as spaces, runs of
spaces as one): "navi  mumbai" is "Navi-Mumbai", and is not "Mumbai".

Nothing is cached: a search reads the groups in its own query (two index probes), so
an admin's change applies to the next search on every instance, with or without a bus.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from kernel.errors import Conflict, NotFound
from kernel.rpc.registry import Access, Caller, MethodRegistry, Params, Result
from kernel.rpc.text import Line, invalid
from storage import places
from storage.database import Database

MAX_PAGE = 100

Kind = Literal["city", "state"]


def _has_letters(value: str) -> str:
    if not any(c.isalnum() for c in value):
        raise ValueError("needs a letter or a digit")
    return value


PlaceName = Annotated[str, Line(2, 100), AfterValidator(_has_letters)]


# --- Wire models -------------------------------------------------------------------------


class ListPlaces(Params):
    kind: Kind
    after: str | None = Field(
        None, min_length=1, max_length=200, description="nextAfter of the previous page"
    )
    limit: int = Field(MAX_PAGE, ge=1, le=MAX_PAGE)


class SetAlias(Params):
    kind: Kind
    name: PlaceName = Field(description="the other name (Bangalore)")
    canonical: PlaceName = Field(description="the name of its group (Bengaluru)")


class RemoveAlias(Params):
    kind: Kind
    name: PlaceName


class Alias(Result):
    name: str
    key: str


class Place(Result):
    kind: str
    name: str = Field(description="the canonical name, as written")
    key: str = Field(description="what names are compared by")
    aliases: list[Alias] = Field(description="by key; empty: the group is gone")


class PlacePage(Result):
    places: list[Place]
    next_after: str | None = Field(None, description="pass as after for the next page")


# --- The service -------------------------------------------------------------------------


def _place(group: places.PlaceGroup) -> Place:
    return Place(
        kind=group.kind,
        name=group.name,
        key=group.key,
        aliases=[Alias(name=a.name, key=a.key) for a in group.aliases],
    )


class PlaceService:
    def __init__(self, db: Database) -> None:
        self._db = db

    def register(self, registry: MethodRegistry) -> None:
        admin = Access.ADMIN
        registry.add(
            "admin.places.list", self.list, params=ListPlaces, result=PlacePage, access=admin
        )
        registry.add(
            "admin.places.setAlias", self.set_alias, params=SetAlias, result=Place, access=admin
        )
        registry.add(
            "admin.places.removeAlias",
            self.remove_alias,
            params=RemoveAlias,
            result=Place,
            access=admin,
        )

    async def list(self, caller: Caller, params: ListPlaces) -> PlacePage:
        """The groups of names of cities or states, by canonical key."""
        groups = await places.list_groups(
            self._db, params.kind, after_key=params.after, limit=params.limit + 1
        )
        page = groups[: params.limit]
        return PlacePage(
            places=[_place(g) for g in page],
            next_after=page[-1].key if len(groups) > params.limit else None,
        )

    async def set_alias(self, caller: Caller, params: SetAlias) -> Place:
        """Make ``name`` another name of ``canonical``'s place (creating the group, or
        moving ``name`` from the group it was in); searches match it at once."""
        kind = params.kind
        async with self._db.transaction() as conn:
            await places.lock(conn)
            name_key, canonical_key = await places.keys(conn, params.name, params.canonical)
            if name_key == canonical_key:
                raise invalid(("name", "the same name as canonical"))
            named = await places.find(conn, kind, name_key)
            if named is not None and named.is_canonical:
                raise Conflict(
                    f"{named.name} is the canonical name of its group: remove its aliases first",
                    reason="is_canonical",
                    field="name",
                )
            target = await places.find(conn, kind, canonical_key)
            if target is not None and not target.is_canonical:
                raise Conflict(
                    f"{target.name} is an alias of {target.canonical_name}: name that instead",
                    reason="canonical_is_alias",
                    field="canonical",
                    canonical=target.canonical_name,
                )
            await places.set_alias(conn, kind, params.name, params.canonical)
            group = await places.get_group(conn, kind, canonical_key)
        assert group is not None
        return _place(group)

    async def remove_alias(self, caller: Caller, params: RemoveAlias) -> Place:
        """Make ``name`` a place of its own again; returns the group it left."""
        kind = params.kind
        async with self._db.transaction() as conn:
            await places.lock(conn)
            (key,) = await places.keys(conn, params.name)
            named = await places.find(conn, kind, key)
            if named is None:
                raise NotFound(f"{params.name} is in no group of {kind} names", field="name")
            if named.is_canonical:
                raise Conflict(
                    f"{named.name} is the canonical name of its group: remove its aliases"
                    " (the group goes with the last)",
                    reason="is_canonical",
                    field="name",
                )
            canonical_key = await places.remove_alias(conn, kind, key)
            assert canonical_key is not None  # found under the lock
            group = await places.get_group(conn, kind, canonical_key)
        return _place(group or places.PlaceGroup(kind, named.canonical_name, canonical_key, ()))
