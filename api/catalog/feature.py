"""The services catalog as a feature: the cached master list and its admin changes,
and the names of places (cities and states) that searches match alike."""

from __future__ import annotations

from api.catalog.cache import CatalogCache
from api.catalog.places import PlaceService
from api.catalog.service import CatalogService
from kernel.feature import Feature, Kit
from storage import catalog


class CatalogFeature(Feature):
    name = "catalog"

    async def install(self, kit: Kit) -> None:
        db = kit.db
        self.cache = CatalogCache(lambda: catalog.load_catalog(db), kit.clock)
        CatalogService(db, self.cache, kit.signals).register(kit.methods)
        PlaceService(db).register(kit.methods)
