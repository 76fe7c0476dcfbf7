"""Places as people type them: providers.search matches a city or state by any name of
its group (read from the database: a row added later is covered too), whatever the case
and spacing; onlyCity filters where city ranks; admins edit the groups
(admin.places.*) and the next search on any instance follows; listings' lowest price
and rating figures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from rtc_server.app import App
from rtc_server.client import RtcClient

from .admins import login_admin
from .conftest import AppFactory, Clients, CodeLog
from .market import market
from .test_providers import provider, refused, registration, service_id, sub_service_ids
from .test_ratings_reports import completed, rate


@pytest.fixture
async def app(make_app: AppFactory) -> App:
    # Searching by every seeded name is a few hundred requests on one socket: past the
    # default per-socket rate limit, which is not what these tests are about.
    return await make_app(server={"rate_burst": 10_000, "rate_per_second": 10_000.0})


@dataclass(frozen=True)
class Alias:
    name: str
    canonical: str


async def aliases(app: App, kind: str) -> list[Alias]:
    """Every alias of ``kind`` in the database, with its group's canonical name."""
    assert app.db is not None
    rows = await app.db.fetch(
        """
        SELECT a.name, c.name AS canonical
        FROM place_names a JOIN place_names c ON c.kind = a.kind AND c.key = a.canonical_key
        WHERE a.kind = $1 AND a.key <> a.canonical_key ORDER BY a.key
        """,
        kind,
    )
    return [Alias(r["name"], r["canonical"]) for r in rows]


async def place_names(app: App) -> list[tuple[str, str, str, str]]:
    assert app.db is not None
    rows = await app.db.fetch(
        "SELECT kind, name, key, canonical_key FROM place_names ORDER BY kind, key"
    )
    return [(r["kind"], r["name"], r["key"], r["canonical_key"]) for r in rows]


def typed(name: str) -> list[str]:
    """The name as written, shouted with its spaces doubled and padded, and hyphenated."""
    return [name, "  " + name.upper().replace(" ", "  ") + " ", "-".join(name.lower().split())]


class Search:
    """providers.search of the labour service by an anonymous socket."""

    def __init__(self, client: RtcClient, labour: int) -> None:
        self.client = client
        self.labour = labour

    async def ids(self, **params: Any) -> list[int]:
        page = await self.client.call("providers.search", {"serviceId": self.labour, **params})
        return [p["providerServiceId"] for p in page["providers"]]

    async def in_city(self, city: str) -> list[int]:
        return await self.ids(city=city, onlyCity=True)


async def labour_listing(clients: Clients, app: App, name: str, **fields: Any) -> int:
    client, _ = await provider(clients, name)
    registered = await client.call(
        "providers.registerService", await registration(app, "labors", **fields)
    )
    listing: int = registered["providerServiceId"]
    return listing


async def test_a_city_is_found_by_every_name_of_it(clients: Clients, app: App) -> None:
    every = await aliases(app, "city")
    assert len(every) >= 40
    ravi, _ = await provider(clients)
    mine = await ravi.call("providers.registerService", await registration(app, "labors"))
    ref = {"providerServiceId": mine["providerServiceId"]}
    # Another listing, in a city of no group: never found by these names.
    await labour_listing(clients, app, "Elsewhere", city="Navi Mumbai", state="Maharashtra")
    search = Search(await clients.anonymous(), await service_id(app, "labors"))
    missed = []
    for alias in every:
        # Stored under one name, searched by the other, however it is typed.
        for stored, searched in ((alias.canonical, alias.name), (alias.name, alias.canonical)):
            await ravi.call("providers.updateService", {**ref, "city": stored})
            for text in typed(searched):
                if await search.in_city(text) != [ref["providerServiceId"]]:
                    missed.append(f"{text!r} did not find {stored!r}")
    assert missed == []


async def test_a_state_is_ranked_by_every_name_of_it(clients: Clients, app: App) -> None:
    every = await aliases(app, "state")
    assert len(every) >= 10
    ravi, _ = await provider(clients)
    fields = {"city": "Nowhereville", "yearsOfExperience": 0}
    mine = await ravi.call("providers.registerService", await registration(app, "labors", **fields))
    ref = {"providerServiceId": mine["providerServiceId"]}
    # More experienced, so first unless the state ranks the other one above it.
    other = await labour_listing(
        clients, app, "Elsewhere", city="Othertown", state="Elsewhere", yearsOfExperience=50
    )
    search = Search(await clients.anonymous(), await service_id(app, "labors"))
    assert await search.ids() == [other, ref["providerServiceId"]]
    missed = []
    for alias in every:
        for stored, searched in ((alias.canonical, alias.name), (alias.name, alias.canonical)):
            await ravi.call("providers.updateService", {**ref, "state": stored})
            for text in typed(searched):
                if await search.ids(state=text) != [ref["providerServiceId"], other]:
                    missed.append(f"{text!r} did not rank {stored!r} first")
    assert missed == []


async def test_case_spacing_and_punctuation_but_never_another_city(
    clients: Clients, app: App
) -> None:
    navi = await labour_listing(clients, app, "Navi", city="Navi Mumbai", state="Maharashtra")
    mumbai = await labour_listing(clients, app, "Mumbai", city="Mumbai", state="Maharashtra")
    delhi = await labour_listing(clients, app, "Delhi", city="new   delhi", state="Delhi")
    search = Search(await clients.anonymous(), await service_id(app, "labors"))
    expected = {
        "navi mumbai": [navi],
        "  NAVI   MUMBAI ": [navi],
        "Navi-Mumbai": [navi],
        "navi.mumbai": [navi],
        "Mumbai": [mumbai],
        "bombay": [mumbai],
        "Navi Bombay": [],  # an alias names a whole place, never a word of one
        "Mumbai Central": [],
        "Delhi": [delhi],
        "New Delhi.": [delhi],
        "Delhi Cantonment": [],
    }
    for city, listings in expected.items():
        assert await search.in_city(city) == listings, city
    # The listing shows the name as its provider wrote it.
    page = await search.client.call(
        "providers.search", {"serviceId": search.labour, "city": "delhi", "onlyCity": True}
    )
    assert page["providers"][0]["city"] == "new   delhi"


async def test_only_city_filters_where_city_ranks(clients: Clients, app: App) -> None:
    # (city, state, years) of each labourer.
    places = [
        ("Bengaluru", "Karnataka", 3),
        ("bangalore", "karnataka", 10),
        ("Mysuru", "Karnataka", 20),
        ("Chennai", "Tamil Nadu", 30),
        ("BENGALURU", "Karnataka", 1),
    ]
    ids = [
        await labour_listing(clients, app, f"Labourer {i}", city=c, state=s, yearsOfExperience=y)
        for i, (c, s, y) in enumerate(places)
    ]
    search = Search(await clients.anonymous(), await service_id(app, "labors"))
    query = {"city": "Bangalore", "state": "KARNATAKA"}
    # Ranked: the city (any of its names), the state, the rest; by experience within.
    assert await search.ids(**query) == [ids[1], ids[0], ids[4], ids[2], ids[3]]
    # Filtered: the city alone, in the same order, over pages.
    seen: list[int] = []
    cursor = None
    while True:
        page = await search.client.call(
            "providers.search",
            {
                "serviceId": search.labour,
                **query,
                "onlyCity": True,
                "limit": 2,
                **({"cursor": cursor} if cursor else {}),
            },
        )
        seen += [p["providerServiceId"] for p in page["providers"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == [ids[1], ids[0], ids[4]]
    # Neither a city nor onlyCity: every listing by experience.
    assert await search.ids() == [ids[3], ids[2], ids[1], ids[0], ids[4]]
    # A cursor of the ranked search is not one of the filtered search.
    ranked = await search.client.call(
        "providers.search", {"serviceId": search.labour, **query, "limit": 1}
    )
    error = await refused(
        search.client,
        "providers.search",
        {"serviceId": search.labour, **query, "onlyCity": True, "cursor": ranked["nextCursor"]},
    )
    assert error.code == -32602 and error.data["fields"][0]["field"] == "cursor"
    error = await refused(
        search.client, "providers.search", {"serviceId": search.labour, "onlyCity": True}
    )
    assert error.code == -32602 and error.data["fields"][0]["field"] == "onlyCity"


async def test_an_admins_alias_applies_at_once_on_another_instance(
    clients: Clients, app: App, make_app: AppFactory, code_log: CodeLog
) -> None:
    bengaluru = await labour_listing(clients, app, "Ravi", city="Bengaluru", state="Karnataka")
    kasaragod = await labour_listing(clients, app, "Anil", city="Kasaragod", state="Kerala")
    # Another instance on the same database, with no bus between them: nothing to
    # invalidate, since every search reads the groups in its own query.
    other = await make_app()
    other_clients = Clients(other, code_log)
    try:
        search = Search(await other_clients.anonymous(), await service_id(other, "labors"))
        admin, _ = await login_admin(clients)
        assert await search.in_city("BLR") == []
        group = await admin.call(
            "admin.places.setAlias", {"kind": "city", "name": "Blr", "canonical": "bengaluru."}
        )
        assert group["name"] == "Bengaluru" and group["key"] == "bengaluru"
        assert {"name": "Blr", "key": "blr"} in group["aliases"]
        assert await search.in_city("BLR") == [bengaluru]
        # A new group, then its only alias removed: the group is gone.
        assert await search.in_city("Kasargod") == []
        group = await admin.call(
            "admin.places.setAlias",
            {"kind": "city", "name": "Kasargod", "canonical": "Kasaragod"},
        )
        assert group == {
            "kind": "city",
            "name": "Kasaragod",
            "key": "kasaragod",
            "aliases": [{"name": "Kasargod", "key": "kasargod"}],
        }
        assert await search.in_city("kasargod") == [kasaragod]
        listed = await admin.call("admin.places.list", {"kind": "city"})
        assert group in listed["places"]
        left = await admin.call("admin.places.removeAlias", {"kind": "city", "name": "KASARGOD"})
        assert left["name"] == "Kasaragod" and left["aliases"] == []
        assert await search.in_city("kasargod") == []
        assert await search.in_city("Kasaragod") == [kasaragod]
        listed = await admin.call("admin.places.list", {"kind": "city"})
        assert "kasaragod" not in {p["key"] for p in listed["places"]}
        # Set again, an alias moves to the other group.
        moved = await admin.call(
            "admin.places.setAlias", {"kind": "city", "name": "blr", "canonical": "Kasaragod"}
        )
        assert moved["aliases"] == [{"name": "blr", "key": "blr"}]
        assert await search.in_city("Blr") == [kasaragod]
        assert await search.in_city("Bangalore") == [bengaluru]  # the old group stays
    finally:
        await other_clients.close()


async def test_admin_list_pages_through_the_groups(clients: Clients, app: App) -> None:
    admin, _ = await login_admin(clients)
    seen: list[dict[str, Any]] = []
    after = None
    while True:
        page = await admin.call(
            "admin.places.list",
            {"kind": "state", "limit": 5, **({"after": after} if after else {})},
        )
        seen += page["places"]
        after = page["nextAfter"]
        if after is None:
            break
    keys = [p["key"] for p in seen]
    assert keys == sorted(keys) and len(keys) == len(set(keys))
    assert {a.canonical.lower() for a in await aliases(app, "state")} == set(keys)
    odisha = next(p for p in seen if p["key"] == "odisha")
    assert odisha == {
        "kind": "state",
        "name": "Odisha",
        "key": "odisha",
        "aliases": [{"name": "Orissa", "key": "orissa"}],
    }


async def test_bad_or_refused_changes_change_nothing(clients: Clients, app: App) -> None:
    admin, _ = await login_admin(clients)
    before = await place_names(app)

    async def invalid(method: str, params: dict[str, Any], field: str) -> None:
        error = await refused(admin, method, params)
        assert error.code == -32602, (params, error)
        assert error.data["fields"][0]["field"] == field, (params, error.data)

    alias = "admin.places.setAlias"
    city = {"kind": "city", "name": "Blr", "canonical": "Bengaluru"}
    for name in ("", "   ", "x" * 101, "...", "- -"):
        await invalid(alias, {**city, "name": name}, "name")
        await invalid(alias, {**city, "canonical": name}, "canonical")
        await invalid("admin.places.removeAlias", {"kind": "city", "name": name}, "name")
    await invalid(alias, {**city, "kind": "town"}, "kind")
    await invalid(alias, {"kind": "city", "name": "Blr"}, "canonical")
    # One name, however it is written, is not an alias of itself.
    await invalid(alias, {**city, "name": "  BENGALURU. "}, "name")
    await invalid("admin.places.list", {"kind": "city", "limit": 101}, "limit")
    await invalid("admin.places.list", {}, "kind")
    # A canonical name is not made another's alias (groups never chain or merge).
    error = await refused(admin, alias, {"kind": "city", "name": "Mumbai", "canonical": "Kolkata"})
    assert error.name == "conflict" and error.data["reason"] == "is_canonical"
    assert error.data["field"] == "name"
    error = await refused(admin, alias, {"kind": "city", "name": "Madras", "canonical": "Bombay"})
    assert error.name == "conflict" and error.data["reason"] == "canonical_is_alias"
    assert error.data["field"] == "canonical" and error.data["canonical"] == "Mumbai"
    error = await refused(admin, "admin.places.removeAlias", {"kind": "city", "name": "mumbai"})
    assert error.name == "conflict" and error.data["reason"] == "is_canonical"
    for kind, name in (("city", "Navi Mumbai"), ("state", "Bombay")):
        error = await refused(admin, "admin.places.removeAlias", {"kind": kind, "name": name})
        assert error.name == "not_found" and error.data["field"] == "name"
    # Nobody but an admin.
    provider_client, _ = await clients.login(role="provider")
    customer, _ = await clients.login()
    anonymous = await clients.anonymous()
    for client, outcome in (
        (provider_client, "forbidden"),
        (customer, "forbidden"),
        (anonymous, "unauthenticated"),
    ):
        for method, params in (
            (alias, city),
            ("admin.places.removeAlias", {"kind": "city", "name": "Bangalore"}),
            ("admin.places.list", {"kind": "city"}),
        ):
            assert (await refused(client, method, params)).name == outcome
    assert await place_names(app) == before


async def test_listings_carry_their_lowest_price_and_customers_rating(
    clients: Clients, app: App
) -> None:
    m = await market(clients, app)  # a plumber in Kochi, priced 10000, 20000, 35000 paise
    for hours, stars in ((24, 5), (30, 4), (36, 2)):
        job = await completed(m, hours)
        await m.customer.call("ratings.create", rate(job["id"], stars))
        await m.provider.call("ratings.create", rate(job["id"], 5))  # of the customer: not listed
    anonymous = await clients.anonymous()
    plumbing = await service_id(app, "plumber")
    query = {"serviceId": plumbing, "city": "Cochin", "onlyCity": True}
    ref = {"providerServiceId": m.listing}
    found = (await anonymous.call("providers.search", query))["providers"]
    details = await anonymous.call("providers.get", ref)
    featured = (await anonymous.call("providers.featured"))["providers"]
    for listing in (found[0], details, featured[0]):
        assert listing["providerServiceId"] == m.listing
        assert (listing["minPricePaise"], listing["maxPricePaise"]) == (10_000, 35_000)
        assert (listing["ratingAverage"], listing["ratingCount"]) == (3.67, 3)  # 11 / 3
    # Its sub-services dropped from the catalog, the listing has no price left.
    admin, _ = await login_admin(clients)
    priced = set(m.subs)
    assert app.db is not None
    kept = await app.db.fetch(
        "SELECT slug, name FROM sub_services WHERE service_id = $1 AND id <> ALL($2::bigint[])"
        " ORDER BY position",
        plumbing,
        list(priced),
    )
    await admin.call(
        "admin.services.update",
        {"id": plumbing, "subServices": [{"slug": r["slug"], "name": r["name"]} for r in kept]},
    )
    assert not priced & set(await sub_service_ids(app, "plumber"))
    found = (await anonymous.call("providers.search", query))["providers"]
    assert [(p["minPricePaise"], p["maxPricePaise"]) for p in found] == [(None, None)]
    assert found[0]["ratingCount"] == 3
