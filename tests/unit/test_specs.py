"""Typed events and jobs: a spec names its model, and refuses any other."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import Field

from kernel.events import EventSpec, PushedEvent
from kernel.jobs import JobPayload, JobSpec, Tick
from kernel.push import PushNotice, PushPolicy
from kernel.rpc.registry import MethodRegistry, Result


class Offered(Result):
    booking_id: int
    note: str | None = None


class Other(Result):
    booking_id: int


OFFERED = EventSpec("booking.offered", Offered, "a test event")


def test_an_event_carries_its_model_and_no_other() -> None:
    assert OFFERED.encode(Offered(booking_id=7)) == b'{"bookingId":7,"note":null}'
    with pytest.raises(TypeError, match="carries Offered, not Other"):
        OFFERED.encode(Other(booking_id=7))  # type: ignore[arg-type]


def test_an_event_decodes_what_it_encoded() -> None:
    data = Offered(booking_id=7, note="tomorrow")
    assert OFFERED.decode(OFFERED.encode(data)) == data


def test_omit_none_leaves_absent_fields_out() -> None:
    live = EventSpec("call.signal", Offered, "live", logged=False, omit_none=True)
    assert live.encode(Offered(booking_id=1)) == b'{"bookingId":1}'


@pytest.mark.parametrize("name", ["Booking.offered", "booking..offered", "booking offered", ""])
def test_event_names_are_checked_at_declaration(name: str) -> None:
    with pytest.raises(ValueError, match="lowerCamel"):
        EventSpec(name, Offered, "bad")


def test_event_data_must_be_a_model() -> None:
    with pytest.raises(TypeError, match="pydantic model"):
        EventSpec("x.y", dict, "bad")  # type: ignore[type-var]


def test_a_pushed_event_renders_from_its_stored_json() -> None:
    def render(offer: Offered) -> PushPolicy:
        return PushPolicy(PushNotice(f"booking {offer.booking_id}", "", "bookings"))

    pushed = PushedEvent(OFFERED, render)
    policy = pushed.policy(OFFERED.encode(Offered(booking_id=3)))
    assert policy.notice.title == "booking 3"


def test_the_registry_refuses_two_events_of_one_name() -> None:
    registry = MethodRegistry()
    registry.add_event(OFFERED)
    registry.add_event(OFFERED)  # the same spec again is harmless
    with pytest.raises(ValueError, match="declared twice"):
        registry.add_event(EventSpec("booking.offered", Other, "another"))


class Mix(JobPayload):
    recording_id: int = Field(alias="recordingId")


MIX = JobSpec("recordings.mix", Mix)


def test_a_job_payload_keeps_its_wire_names_and_ignores_unknown_keys() -> None:
    raw = MIX.encode(Mix(recording_id=9))
    assert raw == '{"recordingId":9}'
    assert MIX.decode('{"recordingId": 9, "addedLater": true}') == Mix(recording_id=9)


def test_a_job_refuses_another_payload_and_a_bad_row() -> None:
    with pytest.raises(TypeError, match="carries Mix, not Tick"):
        MIX.encode(Tick())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        MIX.decode('{"recordingId": "nine"}')


def test_a_tick_carries_its_slot() -> None:
    slot = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    spec = JobSpec("housekeeping", Tick)
    assert spec.decode(spec.encode(Tick(slot=slot))).slot == slot
