"""Queries of the services catalog: services, their sub-services, the catalog version.

Every change goes through a transaction that also bumps ``catalog_version``: the
version is what instances compare (the ``services.list`` etag).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.database import Database
from storage.events import Executor


@dataclass(frozen=True, slots=True)
class SubServiceRow:
    slug: str
    name: str
    id: int = 0  # 0 until stored; kept across admin edits (provider prices point at it)


@dataclass(frozen=True, slots=True)
class ServiceRow:
    id: int
    slug: str
    name: str
    category: str
    is_paid: bool
    price_paise: int
    currency: str
    billing_cycle: str
    billing_interval: int
    is_active: bool
    created_at: datetime
    updated_at: datetime
    sub_services: tuple[SubServiceRow, ...]


@dataclass(frozen=True, slots=True)
class Catalog:
    version: int
    services: tuple[ServiceRow, ...]  # by id


_COLUMNS = (
    "s.id, s.slug, s.name, s.category, s.is_paid, s.price_paise, s.currency, s.billing_cycle,"
    " s.billing_interval, s.is_active, s.created_at, s.updated_at"
)

# One query per read: each service with its sub-services aggregated (no N+1).
_SELECT = f"""
    SELECT {_COLUMNS},
           coalesce(array_agg(ss.slug ORDER BY ss.position, ss.id)
                    FILTER (WHERE ss.id IS NOT NULL), '{{}}') AS sub_slugs,
           coalesce(array_agg(ss.name ORDER BY ss.position, ss.id)
                    FILTER (WHERE ss.id IS NOT NULL), '{{}}') AS sub_names,
           coalesce(array_agg(ss.id ORDER BY ss.position, ss.id)
                    FILTER (WHERE ss.id IS NOT NULL), '{{}}') AS sub_ids
    FROM services s LEFT JOIN sub_services ss ON ss.service_id = s.id
"""


def _service(row: Any) -> ServiceRow:
    subs = tuple(
        SubServiceRow(s, n, i)
        for s, n, i in zip(row["sub_slugs"], row["sub_names"], row["sub_ids"], strict=True)
    )
    fields = {k: row[k] for k in ServiceRow.__slots__ if k != "sub_services"}
    return ServiceRow(**fields, sub_services=subs)


async def load_catalog(db: Database) -> Catalog:
    """The active services and the version they belong to, read in one snapshot."""
    async with db.transaction(isolation="repeatable_read", readonly=True) as conn:
        version: int = await conn.fetchval("SELECT version FROM catalog_version")
        rows = await conn.fetch(f"{_SELECT} WHERE s.is_active GROUP BY s.id ORDER BY s.id")
    return Catalog(version, tuple(_service(r) for r in rows))


async def list_services(db: Executor, *, after_id: int | None, limit: int) -> list[ServiceRow]:
    """Every service, inactive ones too, by id: ``limit`` after ``after_id`` (keyset)."""
    rows = await db.fetch(
        f"{_SELECT} WHERE s.id > $1 GROUP BY s.id ORDER BY s.id LIMIT $2", after_id or 0, limit
    )
    return [_service(r) for r in rows]


async def get_service(db: Executor, service_id: int) -> ServiceRow | None:
    row = await db.fetchrow(f"{_SELECT} WHERE s.id = $1 GROUP BY s.id", service_id)
    return None if row is None else _service(row)


async def bump_version(conn: Executor) -> int:
    version: int = await conn.fetchval(
        "UPDATE catalog_version SET version = version + 1 RETURNING version"
    )
    return version


async def create_service(conn: Executor, fields: dict[str, Any]) -> int:
    """Insert a service; raises ``UniqueViolation`` if its slug is taken."""
    columns = sorted(fields)
    _check_columns(columns)
    service_id: int = await conn.fetchval(
        f"INSERT INTO services ({', '.join(columns)})"
        f" VALUES ({', '.join(f'${i}' for i in range(1, len(columns) + 1))}) RETURNING id",
        *(fields[c] for c in columns),
    )
    return service_id


async def update_service(conn: Executor, service_id: int, fields: dict[str, Any]) -> bool:
    """Set ``fields`` of the service; False if there is no such service."""
    columns = sorted(fields)
    _check_columns(columns)
    assignments = "".join(f", {c} = ${i}" for i, c in enumerate(columns, start=2))
    status = await conn.execute(
        f"UPDATE services SET updated_at = now(){assignments} WHERE id = $1",
        service_id,
        *(fields[c] for c in columns),
    )
    return status == "UPDATE 1"


async def replace_sub_services(
    conn: Executor, service_id: int, subs: Sequence[SubServiceRow]
) -> None:
    """Make ``subs`` the service's list, in that order. A slug kept keeps its row (and
    id): providers' prices refer to it and survive an edit of the list; a slug dropped
    takes its providers' prices with it."""
    await conn.execute(
        "DELETE FROM sub_services WHERE service_id = $1 AND slug <> ALL($2::text[])",
        service_id,
        [s.slug for s in subs],
    )
    if subs:
        await conn.execute(
            """
            INSERT INTO sub_services (service_id, slug, name, position)
            SELECT $1, slug, name, position
            FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS t (slug, name, position)
            ON CONFLICT ON CONSTRAINT sub_services_service_slug_key
                DO UPDATE SET name = EXCLUDED.name, position = EXCLUDED.position
            """,
            service_id,
            [s.slug for s in subs],
            [s.name for s in subs],
        )


# Columns a create or an update may set: the only names ever put into SQL text.
WRITABLE = frozenset(
    {
        "slug",
        "name",
        "category",
        "is_paid",
        "price_paise",
        "currency",
        "billing_cycle",
        "billing_interval",
        "is_active",
    }
)


def _check_columns(columns: Sequence[str]) -> None:
    unknown = set(columns) - WRITABLE
    if unknown:
        raise ValueError(f"not writable: {sorted(unknown)}")
