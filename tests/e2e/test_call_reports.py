"""The parties' reports of a call (``calls.report``): once per party, only once the call
ended and within ``calls.report_window``, bounded in size, and in the admins' trail."""

from __future__ import annotations

from typing import Any

from kernel.clock import FakeClock
from rtc_server.app import App
from rtc_server.client import RtcClient

from .admins import login_admin
from .calls import booked, connected_call, ended, live_of, start, step
from .conftest import AppFactory, Clients, CodeLog
from .market import key, next_of, refused

METRICS = {"rttMs": 120, "jitterMs": 8.5, "packetLoss": 0.01, "bitrateKbps": 32}


def report(call_id: int, **fields: Any) -> dict[str, Any]:
    return {"idempotencyKey": key(), "callId": call_id, "quality": 4, **fields}


async def reports_in_trail(app: App, call_id: int) -> int:
    assert app.db is not None
    return int(
        await app.db.fetchval(
            "SELECT count(*) FROM call_events WHERE call_id = $1 AND event = 'report'", call_id
        )
    )


async def test_each_party_reports_once_after_the_end_and_admins_see_it(
    clients: Clients, app: App, clock: FakeClock
) -> None:
    b = await booked(clients, app)
    admin, _ = await login_admin(clients)
    call_id = await connected_call(b)
    # Not before the call has ended.
    early = await refused(b.customer, "calls.report", report(call_id))
    assert early.name == "state_conflict"
    assert (early.data["status"], early.data["action"]) == ("accepted", "report")
    await admin.call("admin.calls.watch", {})
    await step(b.customer, "calls.hangup", call_id)
    await ended(b.provider, call_id)
    assert (await live_of(admin, "admin.call.event"))["event"] == "ended"

    clock.advance(60)
    first = report(call_id, metrics=METRICS, endReason="user_hangup", quality=5)
    answer = await b.customer.call("calls.report", first)
    assert answer == {
        "callId": call_id,
        "quality": 5,
        "metrics": {"rttMs": 120.0, "jitterMs": 8.5, "packetLoss": 0.01, "bitrateKbps": 32.0},
        "endReason": "user_hangup",
        "reportedAt": answer["reportedAt"],
    }
    live = await live_of(admin, "admin.call.event")
    assert (live["callId"], live["event"], live["actor"]) == (call_id, "report", "caller")
    assert live["data"] == {"quality": 5, "metrics": answer["metrics"], "endReason": "user_hangup"}
    # A retry (same key) gets the first answer; another report of the same party is
    # refused; neither adds to the trail.
    assert await b.customer.call("calls.report", first) == answer
    again = await refused(b.customer, "calls.report", report(call_id, quality=1))
    assert again.name == "conflict" and again.data["reason"] == "already_reported"
    # The other party reports too (metrics and end reason are optional).
    theirs = await b.provider.call("calls.report", report(call_id, quality=2))
    assert (theirs["quality"], theirs["metrics"], theirs["endReason"]) == (2, {}, None)
    # Not a party: not found, as an unknown call.
    stranger, _ = await clients.login()
    for client, call in ((stranger, call_id), (b.customer, 10**9)):
        missing = await refused(client, "calls.report", report(call))
        assert missing.name == "not_found" and missing.data["field"] == "callId"

    detail = await admin.call("admin.calls.get", {"callId": call_id})
    trail = [(e["event"], e["actor"]) for e in detail["events"]]
    assert trail == [
        ("ringing", "caller"),
        ("accepted", "callee"),
        ("ended", "caller"),
        ("report", "caller"),
        ("report", "callee"),
    ]
    caller_report, callee_report = detail["events"][3:]
    assert caller_report["data"] == live["data"] and caller_report["at"] == answer["reportedAt"]
    assert callee_report["data"] == {"quality": 2, "metrics": {}}
    assert await reports_in_trail(app, call_id) == 2


async def test_reports_are_taken_within_the_window_after_the_end(
    make_app: AppFactory, code_log: CodeLog, clock: FakeClock
) -> None:
    app = await make_app(calls={"report_window": 600.0})
    clients = Clients(app, code_log)
    try:
        b = await booked(clients, app)
        call_id = (await start(b.customer, b.booking_id))["callId"]
        await next_of(b.provider, "call.incoming")
        ringing = await refused(b.provider, "calls.report", report(call_id))
        assert ringing.name == "state_conflict" and ringing.data["status"] == "ringing"
        await step(b.customer, "calls.cancel", call_id)  # a call never answered ends too
        clock.advance(600)
        assert (await b.provider.call("calls.report", report(call_id, quality=1)))["quality"] == 1
        clock.advance(1)
        late = await refused(b.customer, "calls.report", report(call_id))
        assert late.name == "state_conflict" and late.data["reason"] == "report_window_closed"
        assert await reports_in_trail(app, call_id) == 1
    finally:
        await clients.close()


async def invalid_field(client: RtcClient, params: dict[str, Any]) -> str:
    error = await refused(client, "calls.report", params)
    assert error.code == -32602, error
    return str(error.data["fields"][0]["field"])


async def test_reports_are_bounded_and_refused_ones_change_nothing(
    clients: Clients, app: App
) -> None:
    b = await booked(clients, app)
    call_id = await connected_call(b)
    await step(b.provider, "calls.hangup", call_id)
    many = {f"metric{i}": float(i) for i in range(17)}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"quality": 0}, "quality"),
        ({"quality": 6}, "quality"),
        ({"quality": "good"}, "quality"),
        ({"metrics": many}, "metrics"),
        ({"metrics": {"rtt ms": 1}}, "metrics"),
        ({"metrics": {"x" * 33: 1}}, "metrics"),
        ({"metrics": {"rttMs": "fast"}}, "metrics"),
        ({"metrics": {"rttMs": 1e10}}, "metrics"),
        ({"metrics": {"rttMs": [1, 2]}}, "metrics"),
        ({"endReason": "a\nb"}, "endReason"),
        ({"endReason": "x" * 101}, "endReason"),
        ({"endReason": ""}, "endReason"),
    ]
    for fields, field in cases:
        named = await invalid_field(b.customer, report(call_id, **fields))
        assert named.startswith(field), (fields, named)
    params = report(call_id)
    del params["quality"]
    assert await invalid_field(b.customer, params) == "quality"
    assert await reports_in_trail(app, call_id) == 0
    # Sixteen metrics of 32-letter names are fine.
    most = {f"{'m' * 30}{i:02d}": i / 3 for i in range(16)}
    taken = await b.customer.call("calls.report", report(call_id, metrics=most))
    assert taken["metrics"] == most
    assert await reports_in_trail(app, call_id) == 1
