"""Who may call what: every method of the profile, addresses, catalog, providers, admin,
bookings, ratings, reports, notifications, earnings and calls, called by each kind of
caller, against the outcome the table says.

The resource a method acts on belongs to ``customer`` (an address, a booking) or to
``provider`` (a registration, the provider side of a booking); everyone else who may
call the method at all must get ``not_found``, never the data.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from rtc_server.app import App
from rtc_server.client import RpcCallError, RtcClient
from storage import accounts, recordings

from .admins import login_admin
from .conftest import Clients, e164

ACTORS = ("anonymous", "customer", "provider", "other_customer", "other_provider", "admin")
OK, UNAUTH, FORBIDDEN, NOT_FOUND = "allowed", "unauthenticated", "forbidden", "not_found"
STATE = "state_conflict"  # a party past the authorization checks, the call ringing
CONFLICT = "conflict"
CODE = "invalid_code"

_keys = itertools.count(1)


def key() -> str:
    return f"authz-key-{next(_keys):06d}"


def address_params() -> dict[str, Any]:
    return {
        "idempotencyKey": key(),
        "state": "Kerala",
        "fullAddress": "House 7, MG Road, Kochi",
        "pincode": "682016",
    }


def service_params() -> dict[str, Any]:
    n = next(_keys)
    return {
        "idempotencyKey": key(),
        "slug": f"authz-service-{n}",
        "name": "Authz service",
        "category": "repairs",
        "pricePaise": 100,
    }


def registration_params(service_id: int, sub_service_id: int) -> dict[str, Any]:
    return {
        "idempotencyKey": key(),
        "serviceId": service_id,
        "subServices": [{"subServiceId": sub_service_id, "pricePaise": 25000}],
        "state": "Kerala",
        "city": "Kochi",
        "fullAddress": "House 9, MG Road, Kochi",
    }


@dataclass
class Fixture:
    """What a call may need: the customer's address, an existing service, the
    provider's (active, listed) registration and a catalog service to register for."""

    address_id: int
    service_id: int
    provider_service_id: int
    plumber_id: int
    plumber_sub_id: int
    victim_id: int  # an account of its own for every call, for admin.users.remove
    pending_id: int  # bookings of the customer with the provider, fresh for every call
    accepted_id: int
    completed_id: int
    report_id: int
    call_id: int = 0  # a ringing call of the customer to the provider about pending_id
    order_id: str = "BX-NONE"  # an order of the customer's (labour access, not paid)
    recording_id: int = 0  # a finished recording of that call (parties may not download)


Params = Callable[[Fixture], dict[str, Any]]

# method → (params for the call, outcome per actor in ACTORS order)
MATRIX: dict[str, tuple[Params, tuple[str, ...]]] = {
    "services.list": (lambda f: {}, (OK, OK, OK, OK, OK, OK)),
    "me.get": (lambda f: {}, (UNAUTH, OK, OK, OK, OK, OK)),
    "me.update": (lambda f: {"email": None}, (UNAUTH, OK, OK, OK, OK, OK)),
    # Past the role check a wrong code is refused (deleting: tests/e2e/test_account_deletion).
    "me.delete": (
        lambda f: {"code": "000000"},
        (UNAUTH, CODE, CODE, CODE, CODE, FORBIDDEN),
    ),
    "addresses.list": (lambda f: {}, (UNAUTH, OK, OK, OK, OK, FORBIDDEN)),
    "addresses.create": (
        lambda f: address_params(),
        (UNAUTH, OK, OK, OK, OK, FORBIDDEN),
    ),
    "addresses.update": (
        lambda f: {"id": f.address_id, "city": "Kochi"},
        (UNAUTH, OK, NOT_FOUND, NOT_FOUND, NOT_FOUND, FORBIDDEN),
    ),
    "addresses.delete": (
        lambda f: {"id": f.address_id},
        (UNAUTH, OK, NOT_FOUND, NOT_FOUND, NOT_FOUND, FORBIDDEN),
    ),
    "admin.services.list": (
        lambda f: {"limit": 1},
        (UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    ),
    "admin.services.create": (
        lambda f: service_params(),
        (UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    ),
    "admin.services.update": (
        lambda f: {"id": f.service_id, "name": "Renamed service"},
        (UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    ),
    "admin.services.deactivate": (
        lambda f: {"id": f.service_id},
        (UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    ),
    "admin.places.list": (
        lambda f: {"kind": "city", "limit": 1},
        (UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    ),
    "admin.places.setAlias": (
        lambda f: {"kind": "city", "name": "Blr", "canonical": "Bengaluru"},
        (UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    ),
    "admin.places.removeAlias": (
        lambda f: {"kind": "city", "name": "Bangalore"},
        (UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    ),
    "admin.users.list": (
        lambda f: {"role": "customer", "limit": 1},
        (UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    ),
    "admin.providers.list": (
        lambda f: {"limit": 1},
        (UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    ),
    "admin.users.verify": (
        lambda f: {"userId": f.victim_id, "verified": False},
        (UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    ),
    "admin.users.remove": (
        lambda f: {"userId": f.victim_id},
        (UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    ),
    "admin.stats": (lambda f: {}, (UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK)),
    "admin.audit.list": (
        lambda f: {},
        (UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    ),
    "admin.push.history": (
        lambda f: {"userId": f.victim_id},
        (UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    ),
    "admin.announce": (
        lambda f: {
            "idempotencyKey": key(),
            "audience": "providers",
            "title": "Maintenance",
            "body": "Tonight 02:00-02:30 IST.",
        },
        (UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    ),
    "providers.registerService": (
        lambda f: registration_params(f.plumber_id, f.plumber_sub_id),
        (UNAUTH, FORBIDDEN, OK, FORBIDDEN, OK, FORBIDDEN),
    ),
    "providers.updateService": (
        lambda f: {"providerServiceId": f.provider_service_id, "city": "Kochi"},
        (UNAUTH, FORBIDDEN, OK, FORBIDDEN, NOT_FOUND, FORBIDDEN),
    ),
    "providers.removeService": (
        lambda f: {"providerServiceId": f.provider_service_id},
        (UNAUTH, FORBIDDEN, OK, FORBIDDEN, NOT_FOUND, FORBIDDEN),
    ),
    "providers.myServices": (lambda f: {}, (UNAUTH, FORBIDDEN, OK, FORBIDDEN, OK, FORBIDDEN)),
    "providers.profile.get": (lambda f: {}, (UNAUTH, FORBIDDEN, OK, FORBIDDEN, OK, FORBIDDEN)),
    "providers.profile.update": (
        lambda f: {"yearsOfExperience": 4},
        (UNAUTH, FORBIDDEN, OK, FORBIDDEN, OK, FORBIDDEN),
    ),
    "providers.search": (lambda f: {"serviceId": f.service_id}, (OK,) * 6),
    "providers.get": (lambda f: {"providerServiceId": f.provider_service_id}, (OK,) * 6),
    "providers.featured": (lambda f: {}, (OK,) * 6),
    "bookings.create": (
        lambda f: f.booking_params,  # type: ignore[attr-defined]
        (UNAUTH, OK, FORBIDDEN, NOT_FOUND, FORBIDDEN, FORBIDDEN),
    ),
    "bookings.accept": (
        lambda f: {"idempotencyKey": key(), "bookingId": f.pending_id},
        (UNAUTH, FORBIDDEN, OK, FORBIDDEN, NOT_FOUND, FORBIDDEN),
    ),
    "bookings.reject": (
        lambda f: {"idempotencyKey": key(), "bookingId": f.pending_id, "reason": "Busy"},
        (UNAUTH, FORBIDDEN, OK, FORBIDDEN, NOT_FOUND, FORBIDDEN),
    ),
    "bookings.start": (
        lambda f: {"idempotencyKey": key(), "bookingId": f.accepted_id},
        (UNAUTH, FORBIDDEN, OK, FORBIDDEN, NOT_FOUND, FORBIDDEN),
    ),
    "bookings.complete": (
        lambda f: {"idempotencyKey": key(), "bookingId": f.accepted_id},
        (UNAUTH, FORBIDDEN, OK, FORBIDDEN, NOT_FOUND, FORBIDDEN),
    ),
    "bookings.cancel": (
        lambda f: {"idempotencyKey": key(), "bookingId": f.pending_id},
        (UNAUTH, OK, FORBIDDEN, NOT_FOUND, FORBIDDEN, FORBIDDEN),
    ),
    "bookings.get": (
        lambda f: {"bookingId": f.pending_id},
        (UNAUTH, OK, OK, NOT_FOUND, NOT_FOUND, FORBIDDEN),
    ),
    "bookings.list": (lambda f: {}, (UNAUTH, OK, OK, OK, OK, FORBIDDEN)),
    "bookings.unreadCount": (lambda f: {}, (UNAUTH, OK, OK, OK, OK, FORBIDDEN)),
    "bookings.markViewed": (
        lambda f: {"bookingId": f.pending_id},
        (UNAUTH, OK, OK, NOT_FOUND, NOT_FOUND, FORBIDDEN),
    ),
    "bookings.markAllViewed": (lambda f: {}, (UNAUTH, OK, OK, OK, OK, FORBIDDEN)),
    "ratings.create": (
        lambda f: {"idempotencyKey": key(), "bookingId": f.completed_id, "stars": 5},
        (UNAUTH, OK, OK, NOT_FOUND, NOT_FOUND, FORBIDDEN),
    ),
    "reports.create": (
        lambda f: {
            "idempotencyKey": key(),
            "bookingId": f.pending_id,
            "reason": "Rude",
            "description": "Was rude on the phone.",
        },
        (UNAUTH, OK, OK, NOT_FOUND, NOT_FOUND, FORBIDDEN),
    ),
    "notifications.list": (lambda f: {}, (UNAUTH, OK, OK, OK, OK, FORBIDDEN)),
    "notifications.unreadCount": (lambda f: {}, (UNAUTH, OK, OK, OK, OK, FORBIDDEN)),
    "notifications.markRead": (lambda f: {"ids": [1, 2]}, (UNAUTH, OK, OK, OK, OK, FORBIDDEN)),
    "notifications.delete": (lambda f: {"ids": [1, 2]}, (UNAUTH, OK, OK, OK, OK, FORBIDDEN)),
    "notifications.markAllRead": (lambda f: {}, (UNAUTH, OK, OK, OK, OK, FORBIDDEN)),
    "earnings.get": (
        lambda f: {},
        (UNAUTH, FORBIDDEN, OK, FORBIDDEN, OK, FORBIDDEN),
    ),
    "admin.reports.list": (
        lambda f: {"limit": 1},
        (UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    ),
    "admin.reports.setStatus": (
        lambda f: {"reportId": f.report_id, "status": "closed"},
        (UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    ),
    "admin.reports.setStatusMany": (
        lambda f: {"reportIds": [f.report_id], "status": "closed"},
        (UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    ),
    "reports.mine": (lambda f: {}, (UNAUTH, OK, OK, OK, OK, FORBIDDEN)),
    # Evidence is for the parties of bookings; profile pictures for anyone (uploads tests).
    "uploads.create": (
        lambda f: {
            "idempotencyKey": key(),
            "purpose": "reportEvidence",
            "contentType": "image/jpeg",
            "bytes": 1000,
        },
        (UNAUTH, OK, OK, OK, OK, FORBIDDEN),
    ),
    "admin.uploads.list": (
        lambda f: {"userId": f.victim_id},
        (UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    ),
    "calls.start": (
        lambda f: {"idempotencyKey": key(), "bookingId": f.pending_id},
        (UNAUTH, OK, OK, NOT_FOUND, NOT_FOUND, FORBIDDEN),
    ),
    "calls.accept": (
        lambda f: {"idempotencyKey": key(), "callId": f.call_id},
        (UNAUTH, FORBIDDEN, OK, NOT_FOUND, NOT_FOUND, FORBIDDEN),
    ),
    "calls.reject": (
        lambda f: {"idempotencyKey": key(), "callId": f.call_id},
        (UNAUTH, FORBIDDEN, OK, NOT_FOUND, NOT_FOUND, FORBIDDEN),
    ),
    "calls.cancel": (
        lambda f: {"idempotencyKey": key(), "callId": f.call_id},
        (UNAUTH, OK, FORBIDDEN, NOT_FOUND, NOT_FOUND, FORBIDDEN),
    ),
    "calls.hangup": (
        lambda f: {"idempotencyKey": key(), "callId": f.call_id},
        (UNAUTH, STATE, STATE, NOT_FOUND, NOT_FOUND, FORBIDDEN),
    ),
    "calls.signal": (
        lambda f: {"callId": f.call_id, "candidate": {"candidate": ""}},
        (UNAUTH, STATE, STATE, NOT_FOUND, NOT_FOUND, FORBIDDEN),
    ),
    "calls.resume": (
        lambda f: {"callId": f.call_id},
        (UNAUTH, OK, STATE, NOT_FOUND, NOT_FOUND, FORBIDDEN),
    ),
    "calls.history": (lambda f: {}, (UNAUTH, OK, OK, OK, OK, FORBIDDEN)),
    # The parties get past the checks to find the call still ringing.
    "calls.report": (
        lambda f: {"idempotencyKey": key(), "callId": f.call_id, "quality": 4},
        (UNAUTH, STATE, STATE, NOT_FOUND, NOT_FOUND, FORBIDDEN),
    ),
    "admin.calls.watch": (lambda f: {}, (UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK)),
    "admin.calls.unwatch": (
        lambda f: {},
        (UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    ),
    "admin.calls.active": (
        lambda f: {},
        (UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    ),
    "admin.calls.list": (
        lambda f: {"limit": 1},
        (UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    ),
    "admin.calls.get": (
        lambda f: {"callId": f.call_id},
        (UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    ),
    # By default only admins may hear recordings; others' recordings are not found.
    "recordings.get": (
        lambda f: {"recordingId": f.recording_id},
        (UNAUTH, FORBIDDEN, FORBIDDEN, NOT_FOUND, NOT_FOUND, OK),
    ),
    "recordings.link": (
        lambda f: {"recordingId": f.recording_id, "leg": "callee"},
        (UNAUTH, FORBIDDEN, FORBIDDEN, NOT_FOUND, NOT_FOUND, OK),
    ),
    "admin.recordings.list": (
        lambda f: {"limit": 1},
        (UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    ),
    # Labour access is bought by customers; a listing fee by its provider.
    "payments.initiate": (
        lambda f: {"idempotencyKey": key(), "product": "labourAccess"},
        (UNAUTH, OK, FORBIDDEN, OK, FORBIDDEN, FORBIDDEN),
    ),
    "payments.verify": (
        lambda f: {"orderId": f.order_id},
        (UNAUTH, OK, NOT_FOUND, NOT_FOUND, NOT_FOUND, FORBIDDEN),
    ),
    "payments.get": (
        lambda f: {"orderId": f.order_id},
        (UNAUTH, OK, NOT_FOUND, NOT_FOUND, NOT_FOUND, FORBIDDEN),
    ),
    "payments.list": (lambda f: {}, (UNAUTH, OK, OK, OK, OK, FORBIDDEN)),
    "payments.labourAccess": (
        lambda f: {},
        (UNAUTH, OK, FORBIDDEN, OK, FORBIDDEN, FORBIDDEN),
    ),
    # The provider's free listing is a year from its end: not due for renewal yet.
    "listings.renew": (
        lambda f: {"idempotencyKey": key(), "providerServiceId": f.provider_service_id},
        (UNAUTH, FORBIDDEN, CONFLICT, FORBIDDEN, NOT_FOUND, FORBIDDEN),
    ),
    "admin.payments.list": (
        lambda f: {"limit": 1},
        (UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    ),
    "admin.payments.get": (
        lambda f: {"orderId": f.order_id},
        (UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK),
    ),
    # Past the checks, the admin finds the order is not paid.
    "admin.payments.refund": (
        lambda f: {"idempotencyKey": key(), "orderId": f.order_id, "reason": "a test"},
        (UNAUTH, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN, STATE),
    ),
}

OURS = (
    "me.",
    "addresses.",
    "services.",
    "admin.",
    "providers.",
    "bookings.",
    "ratings.",
    "reports.",
    "notifications.",
    "earnings.",
    "calls.",
    "recordings.",
    "payments.",
    "listings.",
    "uploads.",
)


def test_matrix_covers_every_method_of_the_domain(app: App) -> None:
    ours = {name for name in app.registry.methods if name.startswith(OURS)}
    assert ours == set(MATRIX)


async def outcome(client: RtcClient, method: str, params: dict[str, Any]) -> str:
    try:
        await client.call(method, params)
    except RpcCallError as error:
        return error.name
    return OK


@pytest.mark.parametrize("method", sorted(MATRIX))
async def test_who_may_call(clients: Clients, method: str) -> None:
    actors: dict[str, RtcClient] = {"anonymous": await clients.anonymous()}
    for actor in ("customer", "provider", "other_customer", "other_provider"):
        actors[actor], _ = await clients.login(role=actor.removeprefix("other_"))
    actors["admin"], _ = await login_admin(clients)
    service = await actors["admin"].call("admin.services.create", service_params())
    catalog = {
        s["slug"]: s["id"] for s in (await actors["anonymous"].call("services.list"))["services"]
    }
    assert clients.app.db is not None
    rows = await clients.app.db.fetch(
        "SELECT service_id, min(id) AS sub FROM sub_services GROUP BY service_id"
    )
    subs: dict[int, int] = {r["service_id"]: r["sub"] for r in rows}
    params, expected = MATRIX[method]
    # Booking labour needs labour access: both customers have it (payments test the rule).
    for customer in ("customer", "other_customer"):
        await _labour_access(clients, actors[customer])
    recorded = method.startswith("recordings.")
    called = method.startswith("calls.") or method == "admin.calls.get" or recorded
    booked = called or method.startswith(("bookings.", "ratings.", "reports."))
    seen = {}
    for actor in ACTORS:
        # A fresh address of the customer's for every call: a delete must find it.
        address = await actors["customer"].call("addresses.create", address_params())
        # The provider's free (so active) registration, registered again if removed.
        labour = registration_params(catalog["labors"], subs[catalog["labors"]])
        listed = await _registration(actors["provider"], labour)
        booking = _Bookings(clients, actors, listed, subs[catalog["labors"]], address["id"])
        fixture = Fixture(
            address_id=address["id"],
            service_id=service["id"],
            provider_service_id=listed,
            plumber_id=catalog["plumber"],
            plumber_sub_id=subs[catalog["plumber"]],
            victim_id=await _victim(clients),
            # Only the methods of bookings get bookings: open ones would keep
            # providers.removeService from removing the listing.
            pending_id=await booking.make("pending") if booked else 0,
            # Calls need the pending one only (and the socket rate limit counts).
            accepted_id=await booking.make("accepted") if booked and not called else 0,
            completed_id=await booking.make("completed") if booked and not called else 0,
            report_id=await _report(clients),
        )
        if called and method != "calls.start":
            started = await actors["customer"].call(
                "calls.start", {"idempotencyKey": key(), "bookingId": fixture.pending_id}
            )
            fixture.call_id = started["callId"]
        if recorded:
            fixture.recording_id = await _recording(clients, fixture.call_id)
        if "payments." in method:
            order = await actors["customer"].call(
                "payments.initiate", {"idempotencyKey": key(), "product": "labourAccess"}
            )
            fixture.order_id = order["orderId"]
        fixture.booking_params = booking.params()  # type: ignore[attr-defined]
        seen[actor] = await outcome(actors[actor], method, params(fixture))
        # The customer's bookings per minute are limited (8): a minute between actors.
        clients.app.clock.advance(61)  # type: ignore[attr-defined]
        if actor != "customer":
            # Nobody but its owner changes the customer's address, allowed or refused.
            listed = await actors["customer"].call("addresses.list")
            assert address in listed["addresses"]
        await _remove_address(actors["customer"], address["id"])
        if called and fixture.call_id and seen[actor] != OK:  # refused: the call rings on
            assert clients.app.db is not None
            state = await clients.app.db.fetchval(
                "SELECT state FROM call_sessions WHERE id = $1", fixture.call_id
            )
            assert state == "ringing"
        if called:  # the next actor's call must not find these two busy
            await _end_calls(clients)
        if booked and not called and seen[actor] != OK:  # refused: bookings untouched
            assert clients.app.db is not None
            statuses = await clients.app.db.fetch(
                "SELECT status FROM bookings WHERE id = ANY($1::bigint[]) ORDER BY id",
                [fixture.pending_id, fixture.accepted_id, fixture.completed_id],
            )
            assert [r["status"] for r in statuses] == ["pending", "accepted", "completed"]
        if actor != "admin":  # refused: the victim is untouched
            assert clients.app.db is not None
            victim = await accounts.get_user(clients.app.db, fixture.victim_id)
            assert victim is not None and victim.is_active and victim.is_verified
    assert seen == dict(zip(ACTORS, expected, strict=True))


async def _labour_access(clients: Clients, customer: RtcClient) -> None:
    assert clients.app.db is not None
    me = await customer.call("me.get")
    await clients.app.db.execute(
        "INSERT INTO labour_access (user_id, active_until, updated_at) VALUES ($1, $2, $2)"
        " ON CONFLICT (user_id) DO NOTHING",
        me["id"],
        clients.app.clock.now() + timedelta(days=365),
    )


async def _recording(clients: Clients, call_id: int) -> int:
    """A finished recording of the call, as the media path leaves it (rows only: who
    may see it does not depend on the files)."""
    assert clients.app.db is not None
    now = clients.app.clock.now()
    recording_id = await recordings.start(clients.app.db, call_id, "authz", now)
    leg = recordings.LegRow(
        "callee", None, f"authz/{call_id}/callee.ogg", "opus", 1, 1, 1, 0, "0", None
    )
    await recordings.finish(
        clients.app.db, recording_id, legs=[leg], error=None, duration_ms=1, now=now
    )
    return recording_id


async def _end_calls(clients: Clients) -> None:
    assert clients.app.db is not None
    await clients.app.db.execute(
        """
        UPDATE call_sessions SET state = 'ended', end_reason = 'cancelled',
            ended_by = 'server', ended_at = now()
        WHERE state <> 'ended'
        """
    )


async def _victim(clients: Clients) -> int:
    assert clients.app.db is not None
    phone = e164(clients.new_phone())
    user, _ = await accounts.upsert_verified_user(clients.app.db, phone, "customer", "Victim")
    return user.id


async def _registration(provider: RtcClient, params: dict[str, Any]) -> int:
    mine = await provider.call("providers.myServices")
    for registered in mine["services"]:
        if registered["serviceId"] == params["serviceId"]:
            return int(registered["providerServiceId"])
    created = await provider.call("providers.registerService", params)
    return int(created["providerServiceId"])


async def _remove_address(customer: RtcClient, address_id: int) -> None:
    try:
        await customer.call("addresses.delete", {"id": address_id})
    except RpcCallError as error:  # the method under test deleted it already
        assert error.name == NOT_FOUND


_slots = itertools.count(1)


class _Bookings:
    """Bookings of the customer with the provider's listing, in a given status."""

    def __init__(
        self,
        clients: Clients,
        actors: dict[str, RtcClient],
        listing: int,
        sub_service_id: int,
        address_id: int,
    ) -> None:
        self.clients = clients
        self.actors = actors
        self.listing = listing
        self.sub_service_id = sub_service_id
        self.address_id = address_id

    def params(self) -> dict[str, Any]:
        now: datetime = self.clients.app.clock.now()
        return {
            "idempotencyKey": key(),
            "providerServiceId": self.listing,
            "subServiceIds": [self.sub_service_id],
            "appointmentAt": (now + timedelta(days=2, hours=next(_slots))).isoformat(),
            "addressId": self.address_id,
        }

    async def make(self, status: str) -> int:
        booked = await self.actors["customer"].call("bookings.create", self.params())
        ref = {"bookingId": booked["id"]}
        provider = self.actors["provider"]
        if status in ("accepted", "completed"):
            await provider.call("bookings.accept", {"idempotencyKey": key(), **ref})
        if status == "completed":
            await provider.call("bookings.complete", {"idempotencyKey": key(), **ref})
        return int(booked["id"])


async def _report(clients: Clients) -> int:
    assert clients.app.db is not None
    report_id: int = await clients.app.db.fetchval(
        """
        INSERT INTO reports (reporter_side, reason, description, created_at, updated_at)
        VALUES ('customer', 'Other', 'Made by the authorization test.', now(), now())
        RETURNING id
        """
    )
    return report_id
