"""Providers: their profile, their registrations for catalog services, and the public
listings customers choose from (methods ``providers.*``).

Rules (reference 8.5): one registration per provider and service (the database's
unique key); at least one sub-service, each one of the service's own sub-services in
the catalog, each priced above 0 paise. A paid service starts ``pending`` until it is
paid for (payments come later); the free one (labour) is ``active`` for 365 days.

Public listings never carry a phone number, a user id or a street address: the
original leaked providers' phones in its public routes (reference 1.6). They carry the
provider's profile picture, and a verified provider's working proofs (up to
:data:`MAX_PROOFS`) and engineering certificate: uploads (:mod:`api.uploads`) the
provider attaches with ``providers.profile.update``, public once attached.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import datetime, timedelta
from typing import Annotated

import orjson
from pydantic import Field, model_validator

from api.addresses import City, FullAddress, State
from api.uploads.models import UploadId, UploadView
from api.uploads.service import UPLOADS, Uploads
from kernel.clock import Clock
from kernel.errors import Conflict, NotFound
from kernel.feature import Feature, Kit
from kernel.rpc.registry import (
    Access,
    Caller,
    Empty,
    IdempotentParams,
    MethodRegistry,
    Params,
    Result,
)
from kernel.rpc.text import Paragraphs, invalid, refuse_nulls
from storage import bookings, providers, ratings
from storage.database import Database
from storage.events import Executor
from storage.uploads import UploadRow

MAX_PAGE = 50
MAX_FEATURED = 20
MAX_REVIEWS = 10
MAX_SUB_SERVICES = 50
MAX_PRICE_PAISE = 100_000_000  # ₹10,00,000 for one sub-service: catches typos in paise
FREE_LISTING = timedelta(days=365)
MAX_PROOFS = 10
PROOF_PURPOSES = ("profilePicture", "workingProof", "certificate")
ROLES = frozenset({"provider"})

Id = Annotated[int, Field(ge=1, le=2**63 - 1)]
Years = Annotated[int, Field(ge=0, le=80)]
Description = Annotated[str, Paragraphs(1, 1000)]
Cursor = Annotated[str, Field(min_length=1, max_length=200)]


# --- Wire models -------------------------------------------------------------------------


class SubServicePriceIn(Params):
    sub_service_id: Id
    price_paise: int = Field(gt=0, le=MAX_PRICE_PAISE, description="in paise, above 0")


SubServicePrices = Annotated[
    list[SubServicePriceIn], Field(min_length=1, max_length=MAX_SUB_SERVICES)
]


def _unique_sub_services(subs: list[SubServicePriceIn] | None) -> None:
    if subs is not None and len({s.sub_service_id for s in subs}) != len(subs):
        raise invalid(("subServices", "each sub-service at most once"))


class RegisterService(IdempotentParams):
    service_id: Id
    sub_services: SubServicePrices
    years_of_experience: Years | None = Field(None, description="omitted: the profile's")
    description: Description | None = Field(None, description="omitted: the profile's")
    state: State
    city: City
    full_address: FullAddress

    @model_validator(mode="after")
    def _consistent(self) -> RegisterService:
        _unique_sub_services(self.sub_services)
        return self


class UpdateRegistration(Params):
    """The fields sent are changed."""

    provider_service_id: Id
    sub_services: SubServicePrices | None = Field(None, description="replaces every price")
    years_of_experience: Years | None = Field(None, description="null: the profile's")
    description: Description | None = Field(None, description="null: the profile's")
    state: State | None = None
    city: City | None = None
    full_address: FullAddress | None = None

    @model_validator(mode="after")
    def _consistent(self) -> UpdateRegistration:
        refuse_nulls(self, ("sub_services", "state", "city", "full_address"))
        _unique_sub_services(self.sub_services)
        return self


class RegistrationRef(Params):
    provider_service_id: Id


class MyServices(Params):
    after: Id | None = Field(None, description="nextAfter of the previous page")
    limit: int = Field(20, ge=1, le=MAX_PAGE)


class UpdateProviderProfile(Params):
    years_of_experience: Years | None = None
    description: Description | None = Field(None, description="null removes it")
    is_engineering_provider: bool | None = None
    working_proof_upload_ids: list[UploadId] | None = Field(
        None,
        max_length=MAX_PROOFS,
        description="uploads of purpose workingProof (uploads.create): they replace the"
        " working proofs shown (those kept are sent again; [] removes all)",
    )
    certificate_upload_id: UploadId | None = Field(
        None,
        description="an upload of purpose certificate: the engineering certificate;"
        " null removes it",
    )

    @model_validator(mode="after")
    def _no_nulls(self) -> UpdateProviderProfile:
        refuse_nulls(
            self, ("years_of_experience", "is_engineering_provider", "working_proof_upload_ids")
        )
        proofs = self.working_proof_upload_ids or []
        if len(set(proofs)) != len(proofs):
            raise invalid(("workingProofUploadIds", "each upload at most once"))
        return self


class SearchProviders(Params):
    service_id: Id
    city: City | None = Field(
        None, description="listings in this city come first (any of its names, any case)"
    )
    only_city: bool = Field(False, description="true: only listings in city")
    state: State | None = Field(None, description="then listings in this state")
    cursor: Cursor | None = Field(None, description="nextCursor of the previous page")
    limit: int = Field(20, ge=1, le=MAX_PAGE)

    @model_validator(mode="after")
    def _city_to_filter(self) -> SearchProviders:
        if self.only_city and self.city is None:
            raise invalid(("onlyCity", "needs city"))
        return self


class FeaturedProviders(Params):
    limit: int = Field(10, ge=1, le=MAX_FEATURED)


class SubServicePrice(Result):
    sub_service_id: int
    slug: str
    name: str
    price_paise: int


class Registration(Result):
    provider_service_id: int
    service_id: int
    service_slug: str
    service_name: str
    status: str = Field(description="pending (until paid), active, expired")
    active_until: datetime | None
    years_of_experience: int | None
    description: str | None
    state: str
    city: str
    full_address: str
    sub_services: list[SubServicePrice]
    created_at: datetime
    updated_at: datetime


class RegistrationPage(Result):
    services: list[Registration]
    next_after: int | None = Field(description="pass as after for the next page; null: no more")


class Removed(Result):
    ok: bool = True


class ProviderProfile(Result):
    years_of_experience: int
    description: str | None
    is_engineering_provider: bool
    working_proofs: list[UploadView] = Field(description="in the order attached")
    certificate: UploadView | None = Field(description="the engineering certificate")


class Listing(Result):
    """A provider's registration as customers see it: no phone, no user id, no address."""

    provider_service_id: int
    service_id: int
    service_slug: str
    service_name: str
    display_name: str | None
    years_of_experience: int
    description: str | None
    is_engineering_provider: bool
    state: str
    city: str
    min_price_paise: int | None = Field(
        description='the lowest price of its sub-services ("from ₹…"); null: none priced'
    )
    max_price_paise: int | None = Field(description="the highest; null: none priced")
    rating_average: float | None = Field(description="customers' stars, 1-5; null: none yet")
    rating_count: int
    picture: UploadView | None = Field(
        description="the provider's profile picture (public, stable URLs); null: none"
    )


class Review(Result):
    stars: int
    review: str | None
    customer_name: str | None = Field(description="first name only")
    created_at: datetime


class ListingDetails(Listing):
    sub_services: list[SubServicePrice]
    working_proofs: list[UploadView] = Field(
        description="the provider's photos of past work, once the provider is verified"
    )
    certificate: UploadView | None = Field(
        description="the engineering certificate, once the provider is verified"
    )
    reviews: list[Review] = Field(description="the newest customer ratings (at most 10)")


class ListingPage(Result):
    providers: list[Listing]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: no more")


class FeaturedList(Result):
    providers: list[Listing]


# --- Search cursor -----------------------------------------------------------------------


def _place(name: str | None) -> str:
    """Near enough the database's ``place_key`` for a digest: spellings of one name
    that it treats as one keep a cursor valid."""
    return " ".join((name or "").lower().replace(".", " ").replace("-", " ").split())


def _query_digest(params: SearchProviders) -> str:
    """Binds a cursor to its query: a cursor of another query is refused."""
    query = (
        f"{params.service_id}|{_place(params.city)}|{_place(params.state)}|{int(params.only_city)}"
    )
    return hashlib.blake2b(query.encode(), digest_size=6).hexdigest()


def encode_cursor(key: providers.SearchKey, params: SearchProviders) -> str:
    raw = orjson.dumps(
        {"r": key.rank, "e": key.years_of_experience, "i": key.id, "q": _query_digest(params)}
    )
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, params: SearchProviders) -> providers.SearchKey:
    """The sort keys a cursor carries; -32602 naming ``cursor`` if it is not one of ours."""
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        rank, years, last_id, query = data["r"], data["e"], data["i"], data["q"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise invalid(("cursor", "not a cursor of this search")) from None
    valid = (
        set(data) == {"r", "e", "i", "q"}
        and all(type(v) is int for v in (rank, years, last_id))
        and rank in (0, 1, 2)
        and 0 <= years <= 80
        and 1 <= last_id < 2**63
        and query == _query_digest(params)
    )
    if not valid:
        raise invalid(("cursor", "not a cursor of this search"))
    return providers.SearchKey(rank, years, last_id)


# --- The service -------------------------------------------------------------------------


def _prices(rows: tuple[providers.PriceRow, ...]) -> list[SubServicePrice]:
    return [
        SubServicePrice(
            sub_service_id=p.sub_service_id, slug=p.slug, name=p.name, price_paise=p.price_paise
        )
        for p in rows
    ]


def _registration(row: providers.RegistrationRow) -> Registration:
    return Registration(
        provider_service_id=row.id,
        service_id=row.service_id,
        service_slug=row.service_slug,
        service_name=row.service_name,
        status=row.status,
        active_until=row.active_until,
        years_of_experience=row.years_of_experience,
        description=row.description,
        state=row.state,
        city=row.city,
        full_address=row.full_address,
        sub_services=_prices(row.prices),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _listing_fields(row: providers.ListingRow) -> dict[str, object]:
    return {
        "provider_service_id": row.id,
        "service_id": row.service_id,
        "service_slug": row.service_slug,
        "service_name": row.service_name,
        "display_name": row.display_name,
        "years_of_experience": row.years_of_experience,
        "description": row.description,
        "is_engineering_provider": row.is_engineering_provider,
        "state": row.state,
        "city": row.city,
        "min_price_paise": row.min_price_paise,
        "max_price_paise": row.max_price_paise,
        "rating_average": (
            round(row.rating_sum / row.rating_count, 2) if row.rating_count else None
        ),
        "rating_count": row.rating_count,
    }


def _profile(
    row: providers.ProviderProfileRow, proofs: list[UploadView], certificate: UploadView | None
) -> ProviderProfile:
    return ProviderProfile(
        years_of_experience=row.years_of_experience,
        description=row.description,
        is_engineering_provider=row.is_engineering_provider,
        working_proofs=proofs,
        certificate=certificate,
    )


def _price_pairs(
    entry: providers.CatalogEntry, subs: list[SubServicePriceIn]
) -> list[tuple[int, int]]:
    """The ``(sub_service_id, price)`` pairs; -32602 naming a sub-service not of the service."""
    for i, sub in enumerate(subs):
        if sub.sub_service_id not in entry.sub_service_ids:
            raise invalid((f"subServices.{i}.subServiceId", f"not a sub-service of {entry.slug}"))
    return [(s.sub_service_id, s.price_paise) for s in subs]


async def _catalog_entry(conn: Executor, service_id: int) -> providers.CatalogEntry:
    entry = await providers.catalog_entry(conn, service_id)
    if entry is None or not entry.is_active:
        raise NotFound("no such service", field="serviceId")
    return entry


class ProviderService:
    def __init__(self, db: Database, clock: Clock, uploads: Uploads) -> None:
        self._db = db
        self._clock = clock
        self._uploads = uploads

    def register(self, registry: MethodRegistry) -> None:
        add = registry.add
        add(
            "providers.registerService",
            self.register_service,
            params=RegisterService,
            result=Registration,
            roles=ROLES,
        )
        add(
            "providers.updateService",
            self.update_service,
            params=UpdateRegistration,
            result=Registration,
            roles=ROLES,
        )
        add(
            "providers.myServices",
            self.my_services,
            params=MyServices,
            result=RegistrationPage,
            roles=ROLES,
        )
        add(
            "providers.removeService",
            self.remove_service,
            params=RegistrationRef,
            result=Removed,
            roles=ROLES,
        )
        add(
            "providers.profile.get",
            self.get_profile,
            params=Empty,
            result=ProviderProfile,
            roles=ROLES,
        )
        add(
            "providers.profile.update",
            self.update_profile,
            params=UpdateProviderProfile,
            result=ProviderProfile,
            roles=ROLES,
        )
        public = Access.PUBLIC
        add(
            "providers.search",
            self.search,
            params=SearchProviders,
            result=ListingPage,
            access=public,
        )
        add(
            "providers.get",
            self.get,
            params=RegistrationRef,
            result=ListingDetails,
            access=public,
        )
        add(
            "providers.featured",
            self.featured,
            params=FeaturedProviders,
            result=FeaturedList,
            access=public,
        )

    # --- The provider's own ----------------------------------------------------------

    async def register_service(self, caller: Caller, params: RegisterService) -> Registration:
        """Register for a service with a price per sub-service (one per service)."""
        user_id = caller.require_user()
        fields = params.model_dump(
            include={"years_of_experience", "description", "state", "city", "full_address"}
        )
        async with self._db.transaction() as conn:
            entry = await _catalog_entry(conn, params.service_id)
            prices = _price_pairs(entry, params.sub_services)
            if entry.is_paid:  # listed once paid for (payments come later)
                status, active_until = "pending", None
            else:
                status, active_until = "active", self._clock.now() + FREE_LISTING
            registration_id = await providers.create_registration(
                conn,
                user_id,
                entry.id,
                status=status,
                active_until=active_until,
                fields=fields,
            )
            if registration_id is None:
                raise Conflict(
                    "you are registered for this service already",
                    reason="already_registered",
                    field="serviceId",
                )
            await providers.replace_prices(conn, registration_id, prices)
            row = await providers.get_registration(conn, user_id, registration_id)
        assert row is not None
        return _registration(row)

    async def update_service(self, caller: Caller, params: UpdateRegistration) -> Registration:
        """Change one of the caller's registrations (the fields sent)."""
        user_id = caller.require_user()
        given = params.model_fields_set - {"provider_service_id", "sub_services"}
        changes = params.model_dump(include=given)
        async with self._db.transaction() as conn:
            service_id = await providers.lock_registration(
                conn, user_id, params.provider_service_id
            )
            if service_id is None:
                raise NotFound("no such registration")
            if params.sub_services is not None:
                entry = await providers.catalog_entry(conn, service_id)
                assert entry is not None  # registrations keep their service (no cascade)
                prices = _price_pairs(entry, params.sub_services)
                await providers.replace_prices(conn, params.provider_service_id, prices)
            await providers.update_registration(conn, params.provider_service_id, changes)
            row = await providers.get_registration(conn, user_id, params.provider_service_id)
        assert row is not None
        return _registration(row)

    async def my_services(self, caller: Caller, params: MyServices) -> RegistrationPage:
        """The caller's registrations (every status but removed), oldest first."""
        rows = await providers.list_registrations(
            self._db, caller.require_user(), after_id=params.after, limit=params.limit + 1
        )
        page = rows[: params.limit]
        return RegistrationPage(
            services=[_registration(r) for r in page],
            next_after=page[-1].id if len(rows) > params.limit else None,
        )

    async def remove_service(self, caller: Caller, params: RegistrationRef) -> Removed:
        """Withdraw one of the caller's registrations: it leaves every listing at once.
        Refused while it has open bookings (pending, accepted, in progress)."""
        user_id = caller.require_user()
        async with self._db.transaction() as conn:
            # The lock waits for bookings being created of it (they hold a key share).
            if await providers.lock_registration(conn, user_id, params.provider_service_id) is None:
                raise NotFound("no such registration")
            open_bookings = await bookings.open_bookings_of_registration(
                conn, params.provider_service_id
            )
            if open_bookings:
                raise Conflict(
                    f"{open_bookings} open booking(s): finish or reject them first",
                    reason="open_bookings",
                    count=open_bookings,
                )
            await providers.remove_registration(conn, user_id, params.provider_service_id)
        return Removed()

    async def get_profile(self, caller: Caller, params: Empty) -> ProviderProfile:
        """The caller's provider profile (defaults until first saved), with the
        working proofs and certificate attached."""
        user_id = caller.require_user()
        return await self._own_profile(user_id, await providers.get_profile(self._db, user_id))

    async def _own_profile(
        self, user_id: int, row: providers.ProviderProfileRow
    ) -> ProviderProfile:
        files = await self._uploads.profile_files(user_id)
        return _profile(
            row,
            [self._uploads.view(r, user_id) for r in files["workingProof"]],
            self._uploads.first_view(files["certificate"], user_id),
        )

    async def update_profile(
        self, caller: Caller, params: UpdateProviderProfile
    ) -> ProviderProfile:
        """Change the experience, description or engineering flag, the working proofs
        (up to 10 uploads, replacing those shown) or the certificate (the fields sent).
        Proofs and a certificate taken out are deleted."""
        user_id = caller.require_user()
        given = params.model_fields_set
        changes = params.model_dump(include=given & providers.PROFILE_WRITABLE)
        removed: list[UploadRow] = []
        async with self._db.transaction() as conn:
            row = await providers.save_profile(conn, user_id, changes)
            if params.working_proof_upload_ids is not None:
                removed += await self._uploads.replace(
                    conn,
                    user_id,
                    "workingProof",
                    params.working_proof_upload_ids,
                    field="workingProofUploadIds",
                )
            if "certificate_upload_id" in given:
                certificate = params.certificate_upload_id
                removed += await self._uploads.replace(
                    conn,
                    user_id,
                    "certificate",
                    [] if certificate is None else [certificate],
                    field="certificateUploadId",
                )
        await self._uploads.discard(removed)
        return await self._own_profile(user_id, row)

    # --- Public ------------------------------------------------------------------------

    async def search(self, caller: Caller, params: SearchProviders) -> ListingPage:
        """Active providers of a service: same city first, then same state, then the
        rest (``onlyCity``: the city's alone); more experience first. A place matches by
        any of its names (Bangalore, Bengaluru), whatever the case and spacing. Keyset
        pages: pass ``nextCursor`` back."""
        after = None if params.cursor is None else decode_cursor(params.cursor, params)
        rows = await providers.search(
            self._db,
            service_id=params.service_id,
            city=params.city,
            state=params.state,
            only_city=params.only_city,
            now=self._clock.now(),
            after=after,
            limit=params.limit + 1,
        )
        page = rows[: params.limit]
        next_cursor = None
        if len(rows) > params.limit:
            last = page[-1]
            key = providers.SearchKey(last.rank, last.years_of_experience, last.id)
            next_cursor = encode_cursor(key, params)
        return ListingPage(providers=await self._listings(page), next_cursor=next_cursor)

    async def _listings(self, rows: list[providers.ListingRow]) -> list[Listing]:
        """Listings with their providers' pictures (one query for the page)."""
        pictures = await self._uploads.listing_files([r.id for r in rows])
        return [
            Listing(
                **_listing_fields(r),
                picture=self._uploads.first_view(pictures.get(r.id, []), None),
            )
            for r in rows
        ]

    async def get(self, caller: Caller, params: RegistrationRef) -> ListingDetails:
        """An active provider's listing with the price of each sub-service."""
        row = await providers.get_listing(self._db, params.provider_service_id, self._clock.now())
        if row is None:
            raise NotFound("no such provider")
        reviews = await ratings.recent_reviews(self._db, row.id, MAX_REVIEWS)
        files: dict[str, list[UploadRow]] = {p: [] for p in PROOF_PURPOSES}
        public = await self._uploads.listing_files([row.id], PROOF_PURPOSES)
        for upload in public.get(row.id, []):  # proofs of verified providers only
            files[upload.purpose].append(upload)
        return ListingDetails(
            **_listing_fields(row),
            picture=self._uploads.first_view(files["profilePicture"], None),
            working_proofs=[self._uploads.view(u, None) for u in files["workingProof"]],
            certificate=self._uploads.first_view(files["certificate"], None),
            sub_services=_prices(row.prices),
            reviews=[Review(**{k: getattr(r, k) for k in Review.model_fields}) for r in reviews],
        )

    async def featured(self, caller: Caller, params: FeaturedProviders) -> FeaturedList:
        """A small random set of active providers (any service)."""
        rows = await providers.featured(self._db, self._clock.now(), params.limit)
        return FeaturedList(providers=await self._listings(rows))


class ProvidersFeature(Feature):
    """Providers' registrations and profiles, and the public search: ``providers.*``."""

    name = "providers"

    async def install(self, kit: Kit) -> None:
        ProviderService(kit.db, kit.clock, kit.port(UPLOADS)).register(kit.methods)
