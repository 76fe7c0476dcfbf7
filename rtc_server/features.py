"""The features this server is made of, in the order they are installed.

Adding a feature is adding its class here (and writing its module): the composition
root (:mod:`rtc_server.app`) installs each, and its settings section joins
:data:`Settings`. A feature that uses another's port comes after it.
"""

from __future__ import annotations

from api.addresses import AddressesFeature
from api.admin import AdminFeature
from api.announcements import AnnouncementsFeature
from api.auth.feature import AuthFeature
from api.bookings.feature import BookingsFeature
from api.catalog.feature import CatalogFeature
from api.erasure import ErasureFeature
from api.notifications import NotificationsFeature
from api.payments.feature import PaymentsFeature
from api.profile import ProfileFeature
from api.providers import ProvidersFeature
from api.reminders import RemindersFeature
from api.uploads.feature import UploadsFeature
from kernel.feature import Feature
from recordings.feature import RecordingsFeature
from rtc_server.config import settings_model
from rtc_server.console.feature import ConsoleFeature
from rtc_server.push.feature import PushFeature
from signalling.feature import CallsFeature

FEATURES: tuple[type[Feature], ...] = (
    PushFeature,
    AuthFeature,
    ErasureFeature,  # uses auth's LOGIN_CODES; provides ERASURE
    UploadsFeature,  # uses OBJECTS (the core's) and ERASURE; provides UPLOADS
    ProfileFeature,  # uses UPLOADS
    AddressesFeature,
    CatalogFeature,
    ProvidersFeature,  # uses UPLOADS
    AdminFeature,
    AnnouncementsFeature,
    NotificationsFeature,
    BookingsFeature,  # uses UPLOADS (reports' evidence)
    PaymentsFeature,
    RemindersFeature,
    CallsFeature,  # provides signalling.ports.CALLS
    RecordingsFeature,  # uses CALLS
    ConsoleFeature,  # the admin console's page (reads recordings' settings)
)

#: The settings of a server made of :data:`FEATURES` (the core's sections and theirs).
Settings = settings_model(FEATURES)
