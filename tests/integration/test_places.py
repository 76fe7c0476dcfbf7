"""Place names in PostgreSQL: the key every name is compared by, the seeded groups,
and a search that stays on its index at a realistic size (the plans are asserted)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from storage import places, providers
from storage.database import Database


@pytest.mark.parametrize(
    ("written", "key"),
    [
        ("Bengaluru", "bengaluru"),
        ("  NAVI   mumbai ", "navi mumbai"),
        ("Navi-Mumbai", "navi mumbai"),
        ("navi - mumbai", "navi mumbai"),
        ("St. Thomas Mount", "st thomas mount"),
        ("St.Thomas Mount", "st thomas mount"),
        ("J&K", "j&k"),
        ("Mumbai", "mumbai"),  # not "navi mumbai": a word is never dropped
        ("Tamil \t Nadu.", "tamil nadu"),
    ],
)
async def test_place_key(db: Database, written: str, key: str) -> None:
    assert await places.keys(db, written) == (key,)


async def test_seeded_groups_are_whole_and_do_not_chain(db: Database) -> None:
    rows = await db.fetch("SELECT kind, key, canonical_key FROM place_names")
    canonical = {(r["kind"], r["key"]) for r in rows if r["key"] == r["canonical_key"]}
    aliases = [r for r in rows if r["key"] != r["canonical_key"]]
    assert len(aliases) >= 50
    for alias in aliases:
        assert (alias["kind"], alias["canonical_key"]) in canonical  # never an alias's alias
    # Each canonical name has an alias (a group of one says nothing).
    assert canonical == {(r["kind"], r["canonical_key"]) for r in aliases}
    assert ("city", "navi mumbai") not in {(r["kind"], r["key"]) for r in rows}


async def _many_listings(db: Database, count: int) -> int:
    """``count`` active listings of one service over 500 cities of 20 states (others of
    every other service too); returns that service's id."""
    await db.execute(
        """
        INSERT INTO users (phone, role, full_name)
        SELECT '+9190000' || lpad(i::text, 5, '0'), 'provider', 'Provider ' || i
        FROM generate_series(1, $1) AS i
        """,
        count,
    )
    await db.execute(
        """
        INSERT INTO provider_services (provider_id, service_id, status, state, city,
                                       full_address)
        SELECT u.id, s.id, 'active', 'State ' || (u.id % 20), 'City ' || (u.id % 500),
               'Somewhere 1, Main Road'
        FROM users u CROSS JOIN services s WHERE u.role = 'provider'
        """
    )
    await db.execute("ANALYZE")
    service_id: int = await db.fetchval("SELECT id FROM services WHERE slug = 'plumber'")
    return service_id


async def _plan(db: Database, sql: str, *args: object) -> str:
    rows = await db.fetch(f"EXPLAIN {sql}", *args)
    return "\n".join(r[0] for r in rows)


async def test_search_by_city_is_an_index_scan(db: Database) -> None:
    service_id = await _many_listings(db, 2000)
    now = datetime.now(UTC)
    args = (now, service_id, "bangalore", "Karnataka", None, None, None, 21)
    plan = await _plan(db, providers.search_sql(only_city=True), *args)
    assert "Index Scan using provider_services_city_idx on provider_services" in plan, plan
    assert "AND (status = 'active'::text) AND (city_key = ANY (w.city_keys)))" in plan, plan
    assert "Seq Scan on provider_services" not in plan, plan
    # The searched name's group is read once, before (place_names is small: a few
    # hundred rows at most, so its plan may read it whole).
    assert "CTE wanted" in plan and plan.count("CTE Scan on wanted") == 1, plan
    # Ranked, every listing of the service is read, still by the index of the service.
    plan = await _plan(db, providers.search_sql(only_city=False), *args)
    assert "Seq Scan on provider_services" not in plan, plan
    # What the plans return.
    found = await providers.search(
        db,
        service_id=service_id,
        city="city 7",
        state=None,
        only_city=True,
        now=now,
        after=None,
        limit=50,
    )
    assert len(found) == 4 and {r.city for r in found} == {"City 7"}
