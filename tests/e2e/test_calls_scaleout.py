"""Calls across three instances on one Redis and one database: the callee's devices
ring on every instance, an accept anywhere wins, signals cross instances from device
to device, admins watch from any instance, and a call started on an instance that
stops still times out (another instance's sweep ends it)."""

from __future__ import annotations

from kernel.clock import FakeClock

from .admins import login_admin
from .calls import ended, live_of, start, step
from .conftest import Cluster, device
from .market import later, market, next_of
from .test_call_signalling import OFFER

FAST = {"sweep_interval": 0.02}


async def test_a_call_crosses_instances_device_to_device(cluster: Cluster) -> None:
    a, b, c = await cluster(3, calls=FAST)
    admin_on_c, _ = await login_admin(c)
    await admin_on_c.call("admin.calls.watch", {})
    m = await market(a, a.app)  # customer and provider log in on A
    booking = await m.customer.call("bookings.create", m.booking(later(a.app)))
    on_b = await device(b, m.provider_tokens)
    on_c = await device(c, m.provider_tokens)
    call_id = (await start(m.customer, booking["id"]))["callId"]
    for provider_device in (m.provider, on_b, on_c):
        assert (await next_of(provider_device, "call.incoming"))["callId"] == call_id
    await step(on_c, "calls.accept", call_id)  # instance C answers a call started on A
    for other in (m.provider, on_b):
        await next_of(other, "call.accepted")
        assert (await live_of(other, "call.answeredElsewhere"))["callId"] == call_id
    await m.customer.call(
        "calls.signal", {"callId": call_id, "description": {"type": "offer", "sdp": OFFER}}
    )
    assert (await live_of(on_c, "call.signal"))["description"]["type"] == "offer"
    await on_c.call(
        "calls.signal", {"callId": call_id, "description": {"type": "answer", "sdp": OFFER}}
    )
    assert (await live_of(m.customer, "call.signal"))["description"]["type"] == "answer"
    await next_of(m.customer, "call.connected")
    assert not [e for e in m.provider.received + on_b.received if e.method == "call.signal"]
    await step(on_b, "calls.hangup", call_id)  # any device of a party may hang up
    for client in (m.customer, on_c):
        assert (await ended(client, call_id))["call"]["endReason"] == "hangup"
    seen = []
    while len(seen) < 4:
        seen.append((await live_of(admin_on_c, "admin.call.event"))["event"])
    assert seen == ["ringing", "accepted", "connected", "ended"]


async def test_a_call_started_on_a_stopped_instance_still_times_out(
    cluster: Cluster, clock: FakeClock
) -> None:
    a, b = await cluster(2, calls=FAST)
    m = await market(b, b.app)
    booking = await m.customer.call("bookings.create", m.booking(later(b.app)))
    caller = await device(a, m.customer_tokens)
    call_id = (await start(caller, booking["id"]))["callId"]
    await next_of(m.provider, "call.incoming")
    await a.close()
    await a.app.stop()  # the instance that started the call is gone
    clock.advance(31)
    for client in (m.customer, m.provider):
        change = await ended(client, call_id)
        assert change["call"]["endReason"] == "missed"


async def test_a_call_whose_instance_stops_ends_after_the_grace_unless_resumed_elsewhere(
    cluster: Cluster, clock: FakeClock
) -> None:
    a, b = await cluster(2, calls=FAST)
    m = await market(b, b.app)
    booking = await m.customer.call("bookings.create", m.booking(later(b.app)))
    caller = await device(a, m.customer_tokens)  # the customer's call device is on A
    call_id = (await start(caller, booking["id"]))["callId"]
    await next_of(m.provider, "call.incoming")
    await step(m.provider, "calls.accept", call_id)
    await a.close()
    await a.app.stop()  # SIGTERM: its sockets close, their calls' grace starts
    assert b.app.db is not None
    lost = await b.app.db.fetchval(
        "SELECT caller_lost_at FROM call_sessions WHERE id = $1", call_id
    )
    assert lost is not None
    clock.advance(21)
    change = await ended(m.provider, call_id)
    assert change["call"]["endReason"] == "disconnected" and change["endedBy"] == "server"
