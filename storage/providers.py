"""Queries of providers: their profile, their service registrations and the prices of
the sub-services they offer, and the public listings (search, details, featured).

Owner queries name the provider: a registration is never reachable by id alone.
Public queries read only active registrations of active accounts and never select a
phone number, a user id or a street address.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from storage import places
from storage.events import Executor


@dataclass(frozen=True, slots=True)
class ProviderProfileRow:
    years_of_experience: int
    description: str | None
    is_engineering_provider: bool


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """What registering for a service needs to know of it."""

    id: int
    slug: str
    is_paid: bool
    is_active: bool
    sub_service_ids: frozenset[int]


@dataclass(frozen=True, slots=True)
class PriceRow:
    sub_service_id: int
    slug: str
    name: str
    price_paise: int


@dataclass(frozen=True, slots=True)
class RegistrationRow:
    id: int
    service_id: int
    service_slug: str
    service_name: str
    status: str
    active_until: datetime | None
    years_of_experience: int | None
    description: str | None
    state: str
    city: str
    full_address: str
    created_at: datetime
    updated_at: datetime
    prices: tuple[PriceRow, ...]


@dataclass(frozen=True, slots=True)
class ListingRow:
    """A public listing: what a customer choosing a provider needs, nothing more."""

    id: int
    service_id: int
    service_slug: str
    service_name: str
    display_name: str | None
    years_of_experience: int
    description: str | None
    is_engineering_provider: bool
    state: str
    city: str
    min_price_paise: int | None
    max_price_paise: int | None
    rating_count: int  # customers' ratings of this registration
    rating_sum: int
    rank: int  # 0 same city, 1 same state, 2 elsewhere (search only)
    prices: tuple[PriceRow, ...]


# --- Profile -----------------------------------------------------------------------------


async def get_profile(db: Executor, user_id: int) -> ProviderProfileRow:
    """The provider's profile; the defaults when they never saved one."""
    row = await db.fetchrow(
        "SELECT years_of_experience, description, is_engineering_provider"
        " FROM provider_profiles WHERE user_id = $1",
        user_id,
    )
    if row is None:
        return ProviderProfileRow(0, None, False)
    return ProviderProfileRow(*(row[k] for k in ProviderProfileRow.__slots__))


PROFILE_WRITABLE = frozenset({"years_of_experience", "description", "is_engineering_provider"})


async def save_profile(db: Executor, user_id: int, changes: dict[str, Any]) -> ProviderProfileRow:
    """Create the profile or set ``changes`` (column → value) on it."""
    unknown = set(changes) - PROFILE_WRITABLE
    if unknown:
        raise ValueError(f"not writable: {sorted(unknown)}")
    columns = sorted(changes)
    names = "".join(f", {c}" for c in columns)
    values = "".join(f", ${i}" for i in range(2, len(columns) + 2))
    updates = "".join(f", {c} = EXCLUDED.{c}" for c in columns)
    row = await db.fetchrow(
        f"""
        INSERT INTO provider_profiles (user_id{names}) VALUES ($1{values})
        ON CONFLICT (user_id) DO UPDATE SET updated_at = now(){updates}
        RETURNING years_of_experience, description, is_engineering_provider
        """,
        user_id,
        *(changes[c] for c in columns),
    )
    return ProviderProfileRow(*(row[k] for k in ProviderProfileRow.__slots__))


# --- Registrations (the provider's own) --------------------------------------------------


async def catalog_entry(db: Executor, service_id: int) -> CatalogEntry | None:
    row = await db.fetchrow(
        """
        SELECT s.id, s.slug, s.is_paid, s.is_active,
               coalesce(array_agg(ss.id) FILTER (WHERE ss.id IS NOT NULL), '{}') AS subs
        FROM services s LEFT JOIN sub_services ss ON ss.service_id = s.id
        WHERE s.id = $1 GROUP BY s.id
        """,
        service_id,
    )
    if row is None:
        return None
    return CatalogEntry(
        row["id"], row["slug"], row["is_paid"], row["is_active"], frozenset(row["subs"])
    )


async def create_registration(
    conn: Executor,
    provider_id: int,
    service_id: int,
    *,
    status: str,
    active_until: datetime | None,
    fields: dict[str, Any],
) -> int | None:
    """Insert the registration (or revive a removed one); None if one exists already."""
    _check(fields, REGISTRATION_WRITABLE)
    columns = sorted(fields)
    names = "".join(f", {c}" for c in columns)
    values = "".join(f", ${i}" for i in range(5, len(columns) + 5))
    updates = "".join(f", {c} = EXCLUDED.{c}" for c in columns)
    registration_id: int | None = await conn.fetchval(
        f"""
        INSERT INTO provider_services (provider_id, service_id, status, active_until{names})
        VALUES ($1, $2, $3, $4{values})
        ON CONFLICT (provider_id, service_id) DO UPDATE
            SET status = EXCLUDED.status, active_until = EXCLUDED.active_until,
                created_at = now(), updated_at = now(){updates}
            WHERE provider_services.status = 'removed'
        RETURNING id
        """,
        provider_id,
        service_id,
        status,
        active_until,
        *(fields[c] for c in columns),
    )
    return registration_id


async def replace_prices(
    conn: Executor, registration_id: int, prices: Sequence[tuple[int, int]]
) -> None:
    """Set the registration's prices to ``(sub_service_id, price_paise)`` pairs."""
    await conn.execute(
        "DELETE FROM provider_service_prices WHERE provider_service_id = $1", registration_id
    )
    await conn.execute(
        """
        INSERT INTO provider_service_prices (provider_service_id, sub_service_id, price_paise)
        SELECT $1, sub, price FROM unnest($2::bigint[], $3::bigint[]) AS t (sub, price)
        """,
        registration_id,
        [sub for sub, _ in prices],
        [price for _, price in prices],
    )


# Columns a registration or its update may set: the only names ever put into SQL text.
REGISTRATION_WRITABLE = frozenset(
    {"years_of_experience", "description", "state", "city", "full_address"}
)


def _check(fields: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"not writable: {sorted(unknown)}")


_PRICES = """
    coalesce(
        (SELECT json_agg(json_build_object('sub_service_id', ss.id, 'slug', ss.slug,
                                           'name', ss.name, 'price_paise', p.price_paise)
                         ORDER BY ss.position, ss.id)
         FROM provider_service_prices p JOIN sub_services ss ON ss.id = p.sub_service_id
         WHERE p.provider_service_id = ps.id),
        '[]') AS prices
"""

_REGISTRATION = f"""
    SELECT ps.id, ps.service_id, s.slug AS service_slug, s.name AS service_name, ps.status,
           ps.active_until, ps.years_of_experience, ps.description, ps.state, ps.city,
           ps.full_address, ps.created_at, ps.updated_at, {_PRICES}
    FROM provider_services ps JOIN services s ON s.id = ps.service_id
"""


def _prices(raw: Any) -> tuple[PriceRow, ...]:
    items = orjson.loads(raw) if isinstance(raw, (str, bytes)) else raw
    return tuple(PriceRow(**item) for item in items)


def _registration(row: Any) -> RegistrationRow | None:
    if row is None:
        return None
    fields = {k: row[k] for k in RegistrationRow.__slots__ if k != "prices"}
    return RegistrationRow(**fields, prices=_prices(row["prices"]))


async def get_registration(
    db: Executor, provider_id: int, registration_id: int
) -> RegistrationRow | None:
    """The provider's registration (removed ones are gone); None if not theirs."""
    return _registration(
        await db.fetchrow(
            f"{_REGISTRATION} WHERE ps.id = $1 AND ps.provider_id = $2 AND ps.status <> 'removed'",
            registration_id,
            provider_id,
        )
    )


async def lock_registration(conn: Executor, provider_id: int, registration_id: int) -> int | None:
    """Row-lock the provider's registration; its service id, None if not theirs."""
    service_id: int | None = await conn.fetchval(
        "SELECT service_id FROM provider_services"
        " WHERE id = $1 AND provider_id = $2 AND status <> 'removed' FOR UPDATE",
        registration_id,
        provider_id,
    )
    return service_id


async def list_registrations(
    db: Executor, provider_id: int, *, after_id: int | None, limit: int
) -> list[RegistrationRow]:
    """The provider's registrations by id, ``limit`` after ``after_id`` (keyset)."""
    rows = await db.fetch(
        f"{_REGISTRATION} WHERE ps.provider_id = $1 AND ps.status <> 'removed' AND ps.id > $2"
        " ORDER BY ps.id LIMIT $3",
        provider_id,
        after_id or 0,
        limit,
    )
    return [r for r in map(_registration, rows) if r is not None]


async def update_registration(
    conn: Executor, registration_id: int, changes: dict[str, Any]
) -> None:
    _check(changes, REGISTRATION_WRITABLE)
    columns = sorted(changes)
    assignments = "".join(f", {c} = ${i}" for i, c in enumerate(columns, start=2))
    await conn.execute(
        f"UPDATE provider_services SET updated_at = now(){assignments} WHERE id = $1",
        registration_id,
        *(changes[c] for c in columns),
    )


async def remove_registration(db: Executor, provider_id: int, registration_id: int) -> bool:
    """Mark the provider's registration removed (out of every listing); False if not theirs."""
    status = await db.execute(
        """
        UPDATE provider_services SET status = 'removed', active_until = NULL, updated_at = now()
        WHERE id = $1 AND provider_id = $2 AND status <> 'removed'
        """,
        registration_id,
        provider_id,
    )
    return status == "UPDATE 1"


# --- Public listings ---------------------------------------------------------------------

# Listed: active, not past its end, of an active account and an active service.
_LISTED = """
    ps.status = 'active' AND (ps.active_until IS NULL OR ps.active_until > $1)
    AND u.is_active AND s.is_active
"""

_LISTING_COLUMNS = """
    ps.id, ps.service_id, s.slug AS service_slug, s.name AS service_name,
    u.full_name AS display_name,
    coalesce(ps.years_of_experience, pp.years_of_experience, 0) AS years_of_experience,
    coalesce(ps.description, pp.description) AS description,
    coalesce(pp.is_engineering_provider, false) AS is_engineering_provider,
    ps.state, ps.city,
    pr.min_price_paise, pr.max_price_paise, ps.rating_count, ps.rating_sum
"""

_LISTING_FROM = """
    FROM provider_services ps
    JOIN users u ON u.id = ps.provider_id
    JOIN services s ON s.id = ps.service_id
    LEFT JOIN provider_profiles pp ON pp.user_id = ps.provider_id
    -- The price range: one aggregate per row inside the same query (no N+1).
    CROSS JOIN LATERAL (
        SELECT min(p.price_paise) AS min_price_paise, max(p.price_paise) AS max_price_paise
        FROM provider_service_prices p WHERE p.provider_service_id = ps.id
    ) pr
"""


def _listing(row: Any, *, with_prices: bool = False) -> ListingRow:
    fields = {k: row[k] for k in ListingRow.__slots__ if k not in ("rank", "prices")}
    prices = _prices(row["prices"]) if with_prices else ()
    return ListingRow(**fields, rank=row.get("rank", 2), prices=prices)


@dataclass(frozen=True, slots=True)
class SearchKey:
    """Where a page of search results ends: its last row's sort keys."""

    rank: int
    years_of_experience: int
    id: int


def search_sql(*, only_city: bool) -> str:
    """The query of :func:`search` (parameters as it passes them)."""
    # A place is compared by its group's keys (storage/places.py): the listing's key,
    # stored beside its name, against the searched name's group, on an index.
    in_city = "AND ps.city_key = ANY(w.city_keys)" if only_city else ""
    # The page is chosen first from the registrations alone (sort keys only); the
    # joins and the price range are computed for that page's rows only, not for every
    # listed registration of the service.
    return f"""
        WITH wanted AS MATERIALIZED (
            SELECT {places.group_keys("city", "$3")} AS city_keys,
                   {places.group_keys("state", "$4")} AS state_keys
        ), listed AS (
            SELECT ps.id,
                   coalesce(ps.years_of_experience, pp.years_of_experience, 0) AS yoe,
                   CASE WHEN ps.city_key = ANY(w.city_keys) THEN 0
                        WHEN ps.state_key = ANY(w.state_keys) THEN 1
                        ELSE 2 END AS rank
            FROM wanted w
            CROSS JOIN provider_services ps
            JOIN users u ON u.id = ps.provider_id
            LEFT JOIN provider_profiles pp ON pp.user_id = ps.provider_id
            WHERE ps.service_id = $2 AND ps.status = 'active' {in_city}
              AND (ps.active_until IS NULL OR ps.active_until > $1) AND u.is_active
        ), page AS (
            SELECT * FROM listed
            WHERE $5::int IS NULL OR (rank, -yoe, id) > ($5::int, -$6::int, $7::bigint)
            ORDER BY rank, yoe DESC, id
            LIMIT $8
        )
        SELECT {_LISTING_COLUMNS}, page.rank
        FROM page
        JOIN provider_services ps ON ps.id = page.id
        JOIN users u ON u.id = ps.provider_id
        JOIN services s ON s.id = ps.service_id
        LEFT JOIN provider_profiles pp ON pp.user_id = ps.provider_id
        CROSS JOIN LATERAL (
            SELECT min(p.price_paise) AS min_price_paise, max(p.price_paise) AS max_price_paise
            FROM provider_service_prices p WHERE p.provider_service_id = ps.id
        ) pr
        WHERE s.is_active
        ORDER BY page.rank, page.yoe DESC, page.id
    """


async def search(
    db: Executor,
    *,
    service_id: int,
    city: str | None,
    state: str | None,
    only_city: bool = False,
    now: datetime,
    after: SearchKey | None,
    limit: int,
) -> list[ListingRow]:
    """Listed registrations of a service: same city, then same state, then the rest
    (``only_city``: the city's alone); more experience first; then by id. A city or
    state matches by any name of its place. One query, keyset after ``after``."""
    rows = await db.fetch(
        search_sql(only_city=only_city),
        now,
        service_id,
        city,
        state,
        after.rank if after else None,
        after.years_of_experience if after else None,
        after.id if after else None,
        limit,
    )
    return [_listing(r) for r in rows]


async def get_listing(db: Executor, registration_id: int, now: datetime) -> ListingRow | None:
    """A listed registration with the price of each sub-service; None if not listed."""
    row = await db.fetchrow(
        f"""
        SELECT {_LISTING_COLUMNS}, {_PRICES}
        {_LISTING_FROM}
        WHERE ps.id = $2 AND {_LISTED}
        """,
        now,
        registration_id,
    )
    return None if row is None else _listing(row, with_prices=True)


async def featured(db: Executor, now: datetime, limit: int) -> list[ListingRow]:
    """A random handful of listed registrations."""
    rows = await db.fetch(
        f"SELECT {_LISTING_COLUMNS} {_LISTING_FROM} WHERE {_LISTED} ORDER BY random() LIMIT $2",
        now,
        limit,
    )
    return [_listing(r) for r in rows]
