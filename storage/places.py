"""Queries of place names (table ``place_names``): the groups of names that mean one
city or state (Bengaluru, Bangalore), and the keys a search compares.

A name's key is ``place_key(name)`` (migration 0068): lower case, dots and hyphens as
spaces, runs of spaces as one, trimmed. PostgreSQL alone computes it, for the names
stored here, for listings' cities and states (generated columns of
``provider_services``) and for what a customer searches, so they always agree.

Writers hold :func:`lock` for their whole transaction: the checks that keep groups
from chaining (a canonical name never an alias) read what the others may be changing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from storage.events import Executor

Kind = Literal["city", "state"]
KINDS: frozenset[str] = frozenset({"city", "state"})


@dataclass(frozen=True, slots=True)
class NameRow:
    name: str
    key: str
    canonical_key: str
    canonical_name: str

    @property
    def is_canonical(self) -> bool:
        return self.key == self.canonical_key


@dataclass(frozen=True, slots=True)
class AliasRow:
    name: str
    key: str


@dataclass(frozen=True, slots=True)
class PlaceGroup:
    """A canonical name and the other names of the same place."""

    kind: str
    name: str
    key: str
    aliases: tuple[AliasRow, ...]


def group_keys(kind: str, name_param: str) -> str:
    """SQL (a ``text[]``) of the keys of every name of the place the name in
    ``name_param`` (a ``$n``) means: its group's, or its own key alone when it is in no
    group; ``{NULL}``, which equals nothing, when the name is NULL. Two index probes."""
    if kind not in KINDS:
        raise ValueError(f"not a kind of place: {kind!r}")
    return f"""(
        SELECT coalesce(array_agg(g.key), ARRAY[place_key({name_param}::text)])
        FROM place_names n
        JOIN place_names g ON g.kind = n.kind AND g.canonical_key = n.canonical_key
        WHERE n.kind = '{kind}' AND n.key = place_key({name_param}::text)
    )"""


# --- Reading -----------------------------------------------------------------------------

_GROUPS = """
    SELECT c.kind, c.name, c.key,
           coalesce(array_agg(a.name ORDER BY a.key) FILTER (WHERE a.key IS NOT NULL), '{}')
               AS alias_names,
           coalesce(array_agg(a.key ORDER BY a.key) FILTER (WHERE a.key IS NOT NULL), '{}')
               AS alias_keys
    FROM place_names c
    LEFT JOIN place_names a ON a.kind = c.kind AND a.canonical_key = c.key AND a.key <> c.key
    WHERE c.key = c.canonical_key
"""


def _group(row: Any) -> PlaceGroup:
    aliases = tuple(
        AliasRow(n, k) for n, k in zip(row["alias_names"], row["alias_keys"], strict=True)
    )
    return PlaceGroup(row["kind"], row["name"], row["key"], aliases)


async def list_groups(
    db: Executor, kind: str, *, after_key: str | None, limit: int
) -> list[PlaceGroup]:
    """The groups of ``kind`` by canonical key, ``limit`` after ``after_key`` (keyset)."""
    rows = await db.fetch(
        f"{_GROUPS} AND c.kind = $1 AND c.key > $2 GROUP BY c.kind, c.key ORDER BY c.key LIMIT $3",
        kind,
        after_key or "",
        limit,
    )
    return [_group(r) for r in rows]


async def get_group(db: Executor, kind: str, canonical_key: str) -> PlaceGroup | None:
    row = await db.fetchrow(
        f"{_GROUPS} AND c.kind = $1 AND c.key = $2 GROUP BY c.kind, c.key", kind, canonical_key
    )
    return None if row is None else _group(row)


async def keys(db: Executor, *names: str) -> tuple[str, ...]:
    """The keys of ``names``, as the database computes them."""
    row = await db.fetchrow(
        "SELECT " + ", ".join(f"place_key(${i}::text)" for i in range(1, len(names) + 1)),
        *names,
    )
    return tuple(row[i] for i in range(len(names)))


async def find(db: Executor, kind: str, key: str) -> NameRow | None:
    """The stored name with this key, with its group's canonical name; None if none."""
    row = await db.fetchrow(
        """
        SELECT n.name, n.key, n.canonical_key, c.name AS canonical_name
        FROM place_names n
        JOIN place_names c ON c.kind = n.kind AND c.key = n.canonical_key
        WHERE n.kind = $1 AND n.key = $2
        """,
        kind,
        key,
    )
    return None if row is None else NameRow(*(row[k] for k in NameRow.__slots__))


# --- Writing (under lock) ----------------------------------------------------------------


async def lock(conn: Executor) -> None:
    """Serialise the writers of place names (searches, which only read, never wait)."""
    await conn.execute("LOCK TABLE place_names IN SHARE ROW EXCLUSIVE MODE")


async def set_alias(conn: Executor, kind: str, name: str, canonical: str) -> None:
    """Make ``name`` a name of ``canonical``'s place, creating the group if new (its
    canonical row as written), moving ``name`` out of the group it was in."""
    await conn.execute(
        """
        INSERT INTO place_names (kind, name, canonical_key) VALUES ($1, $2, place_key($2))
        ON CONFLICT (kind, key) DO NOTHING
        """,
        kind,
        canonical,
    )
    previous: str | None = await conn.fetchval(
        "SELECT canonical_key FROM place_names WHERE kind = $1 AND key = place_key($2)",
        kind,
        name,
    )
    await conn.execute(
        """
        INSERT INTO place_names (kind, name, canonical_key) VALUES ($1, $2, place_key($3))
        ON CONFLICT (kind, key) DO UPDATE
            SET name = EXCLUDED.name, canonical_key = EXCLUDED.canonical_key
        """,
        kind,
        name,
        canonical,
    )
    if previous is not None:
        await _drop_if_alone(conn, kind, previous)


async def remove_alias(conn: Executor, kind: str, key: str) -> str | None:
    """Delete the alias with this key; the key of the group it left, None if no such
    alias. A group left with no alias goes too."""
    canonical_key: str | None = await conn.fetchval(
        "DELETE FROM place_names WHERE kind = $1 AND key = $2 AND canonical_key <> key"
        " RETURNING canonical_key",
        kind,
        key,
    )
    if canonical_key is not None:
        await _drop_if_alone(conn, kind, canonical_key)
    return canonical_key


async def _drop_if_alone(conn: Executor, kind: str, canonical_key: str) -> None:
    # A canonical row with no alias says nothing a name in no group does not.
    await conn.execute(
        """
        DELETE FROM place_names c
        WHERE c.kind = $1 AND c.key = $2 AND c.canonical_key = c.key
          AND NOT EXISTS (SELECT 1 FROM place_names a
                          WHERE a.kind = c.kind AND a.canonical_key = c.key AND a.key <> c.key)
        """,
        kind,
        canonical_key,
    )
