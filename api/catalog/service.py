"""The services catalog: the public list and the admins' changes.

``services.list`` is answered from :class:`~api.catalog.cache.CatalogCache`. Its
``etag`` is the catalog version (a row every admin change bumps in the same
transaction, so every instance agrees) plus a digest of the query: called again with
it, the answer is ``{"notModified": true}`` and nothing else, the socket-world 304.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from api.catalog.cache import TOPIC, CatalogCache
from kernel.errors import Conflict, InvalidParams, NotFound
from kernel.rpc.registry import (
    Access,
    Caller,
    Encoded,
    IdempotentParams,
    MethodRegistry,
    Params,
    Result,
)
from kernel.rpc.text import Line, Slug, invalid, refuse_nulls
from kernel.signals import Signals
from storage import catalog
from storage.database import Database
from storage.errors import CheckViolation, UniqueViolation

log = logging.getLogger("rtc.catalog")

MAX_PAGE = 100
MAX_SUB_SERVICES = 50
MAX_PRICE_PAISE = 10_000_000  # ₹1,00,000: far above any listing fee; catches typos in paise

BillingCycle = Literal[
    "one_time", "monthly", "quarterly", "yearly", "biennial", "triennial", "lifetime"
]
Name = Annotated[str, Line(2, 100)]
ServiceId = Annotated[int, Field(ge=1, le=2**63 - 1)]
NOT_MODIFIED = Encoded(b'{"notModified":true}')


# --- Wire models -------------------------------------------------------------------------


class SubService(Result):
    id: int = Field(description="subServiceId in providers.registerService; kept across edits")
    slug: str
    name: str


class Service(Result):
    id: int
    slug: str
    name: str
    category: str
    is_paid: bool
    price_paise: int = Field(description="listing fee per billing period, in paise")
    currency: str
    billing_cycle: str
    billing_interval: int
    sub_services: list[SubService]


class AdminService(Service):
    is_active: bool
    created_at: datetime
    updated_at: datetime


class ListServices(Params):
    category: Slug | None = None
    etag: str | None = Field(None, max_length=64, description="etag of your cached answer")
    after: ServiceId | None = Field(None, description="nextAfter of the previous page")
    limit: int = Field(MAX_PAGE, ge=1, le=MAX_PAGE)


class ServiceList(Result):
    not_modified: bool = Field(
        False, description="true: your etag is current; then no other field is sent"
    )
    etag: str | None = None
    services: list[Service] = Field(default_factory=list)
    next_after: int | None = Field(None, description="pass as after for the next page")


class SubServiceIn(Params):
    slug: Slug
    name: Name


def _unique_slugs(subs: list[SubServiceIn] | None) -> None:
    if subs is not None and len({s.slug for s in subs}) != len(subs):
        raise invalid(("subServices", "slugs must be unique"))


def _paid_mismatch() -> InvalidParams:
    return invalid(
        ("isPaid", "must agree with pricePaise"),
        ("pricePaise", "above 0 for a paid service, 0 for a free one"),
    )


class CreateService(IdempotentParams):
    slug: Slug
    name: Name
    category: Slug
    is_paid: bool = True
    price_paise: int = Field(ge=0, le=MAX_PRICE_PAISE)
    currency: Literal["INR"] = "INR"
    billing_cycle: BillingCycle = "yearly"
    billing_interval: int = Field(1, ge=1, le=36)
    sub_services: list[SubServiceIn] = Field(default_factory=list, max_length=MAX_SUB_SERVICES)

    @model_validator(mode="after")
    def _consistent(self) -> CreateService:
        _unique_slugs(self.sub_services)
        if self.is_paid != (self.price_paise > 0):
            raise _paid_mismatch()
        return self


class UpdateService(Params):
    """The fields sent are changed; the slug never changes (apps key on it)."""

    id: ServiceId
    name: Name | None = None
    category: Slug | None = None
    is_paid: bool | None = None
    price_paise: int | None = Field(None, ge=0, le=MAX_PRICE_PAISE)
    billing_cycle: BillingCycle | None = None
    billing_interval: int | None = Field(None, ge=1, le=36)
    is_active: bool | None = None
    sub_services: list[SubServiceIn] | None = Field(
        None, max_length=MAX_SUB_SERVICES, description="replaces the whole list"
    )

    @model_validator(mode="after")
    def _no_nulls(self) -> UpdateService:
        refuse_nulls(self, self.model_fields_set)
        _unique_slugs(self.sub_services)
        return self


class AdminListServices(Params):
    after: ServiceId | None = Field(None, description="nextAfter of the previous page")
    limit: int = Field(MAX_PAGE, ge=1, le=MAX_PAGE)


class AdminServicePage(Result):
    services: list[AdminService]
    next_after: int | None = Field(None, description="pass as after for the next page")


class ServiceRef(Params):
    id: ServiceId


# --- The service -------------------------------------------------------------------------


def _service(row: catalog.ServiceRow) -> Service:
    return Service(**_fields(row))


def _admin_service(row: catalog.ServiceRow) -> AdminService:
    return AdminService(
        **_fields(row),
        is_active=row.is_active,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _fields(row: catalog.ServiceRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "slug": row.slug,
        "name": row.name,
        "category": row.category,
        "is_paid": row.is_paid,
        "price_paise": row.price_paise,
        "currency": row.currency,
        "billing_cycle": row.billing_cycle,
        "billing_interval": row.billing_interval,
        "sub_services": [SubService(id=s.id, slug=s.slug, name=s.name) for s in row.sub_services],
    }


def etag(version: int, params: ListServices) -> str:
    """The version plus the query: an etag names one answer, as an HTTP one names one URL."""
    query = f"{params.category or ''}|{params.after or 0}|{params.limit}".encode()
    return f"v{version}-{hashlib.blake2b(query, digest_size=6).hexdigest()}"


class CatalogService:
    def __init__(self, db: Database, cache: CatalogCache, signals: Signals) -> None:
        self._db = db
        self._cache = cache
        self._signals = signals

    def register(self, registry: MethodRegistry) -> None:
        self._signals.subscribe(TOPIC, self._cache.invalidate)
        add = registry.add
        # Returns Encoded for notModified: the registered model is the full answer's.
        add(
            "services.list",
            self.list,
            params=ListServices,
            result=ServiceList,
            access=Access.PUBLIC,
        )
        admin = Access.ADMIN
        add(
            "admin.services.list",
            self.admin_list,
            params=AdminListServices,
            result=AdminServicePage,
            access=admin,
        )
        add(
            "admin.services.create",
            self.create,
            params=CreateService,
            result=AdminService,
            access=admin,
        )
        add(
            "admin.services.update",
            self.update,
            params=UpdateService,
            result=AdminService,
            access=admin,
        )
        add(
            "admin.services.deactivate",
            self.deactivate,
            params=ServiceRef,
            result=AdminService,
            access=admin,
        )

    async def list(self, caller: Caller, params: ListServices) -> ServiceList | Encoded:
        """The active services with their sub-services (cached; etag-aware)."""
        current = await self._cache.get()
        tag = etag(current.version, params)
        if params.etag == tag:
            return NOT_MODIFIED
        services = [
            s
            for s in current.services
            if (params.category is None or s.category == params.category)
            and s.id > (params.after or 0)
        ]
        page = services[: params.limit]
        more = len(services) > params.limit
        return ServiceList(
            etag=tag,
            services=[_service(s) for s in page],
            next_after=page[-1].id if more else None,
        )

    async def admin_list(self, caller: Caller, params: AdminListServices) -> AdminServicePage:
        """Every service, inactive ones too, from the database (never the cache)."""
        rows = await catalog.list_services(self._db, after_id=params.after, limit=params.limit + 1)
        page = rows[: params.limit]
        return AdminServicePage(
            services=[_admin_service(r) for r in page],
            next_after=page[-1].id if len(rows) > params.limit else None,
        )

    async def create(self, caller: Caller, params: CreateService) -> AdminService:
        """Add a service to the catalog (every instance reloads its copy)."""
        fields = params.model_dump(exclude={"idempotency_key", "sub_services"})
        subs = [catalog.SubServiceRow(s.slug, s.name) for s in params.sub_services]
        try:
            async with self._db.transaction() as conn:
                service_id = await catalog.create_service(conn, fields)
                await catalog.replace_sub_services(conn, service_id, subs)
                version = await catalog.bump_version(conn)
                row = await catalog.get_service(conn, service_id)
        except UniqueViolation:
            raise Conflict(
                "a service with this slug exists", reason="slug_taken", field="slug"
            ) from None
        assert row is not None
        await self._changed(version)
        return _admin_service(row)

    async def update(self, caller: Caller, params: UpdateService) -> AdminService:
        """Change a service (the fields sent); ``isActive`` false hides it from the list."""
        given = params.model_fields_set - {"id", "sub_services"}
        fields = params.model_dump(include=given)
        try:
            async with self._db.transaction() as conn:
                if not await catalog.update_service(conn, params.id, fields):
                    raise NotFound("no such service")
                if params.sub_services is not None:
                    subs = [catalog.SubServiceRow(s.slug, s.name) for s in params.sub_services]
                    await catalog.replace_sub_services(conn, params.id, subs)
                version = await catalog.bump_version(conn)
                row = await catalog.get_service(conn, params.id)
        except CheckViolation:
            # The one CHECK an update can break: paid <=> price above 0.
            raise _paid_mismatch() from None
        assert row is not None
        await self._changed(version)
        return _admin_service(row)

    async def deactivate(self, caller: Caller, params: ServiceRef) -> AdminService:
        """Hide a service from the catalog (kept for existing registrations)."""
        return await self.update(
            caller, UpdateService.model_validate({"id": params.id, "isActive": False})
        )

    async def _changed(self, version: int) -> None:
        # This instance forgets its copy at once, even if the bus is down; the signal
        # tells the others (and the expiry covers a signal lost on the way).
        self._cache.invalidate()
        try:
            await self._signals.publish(TOPIC, {"version": version})
        except Exception:  # noqa: BLE001 - the change is committed; caches expire anyway
            log.warning("catalog.changed not published", exc_info=True)
