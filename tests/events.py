"""Events of any shape, for tests of the delivery machinery (not of a feature's events).

Features declare typed events (:class:`kernel.events.EventSpec` with their own model);
the tests of the event log, fan-out, resume and push need events whose data is
whatever the test says::

    await app.publisher.publish(user, loose("booking.offered"), Loose.of({"bookingId": 1}))
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from pydantic import ConfigDict

from kernel.events import EventSpec
from kernel.rpc.registry import Result


class Loose(Result):
    """Data of any shape: its fields are the mapping it was made of."""

    model_config = ConfigDict(extra="allow")

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Loose:
        return cls.model_validate(dict(data))


@cache
def loose(name: str) -> EventSpec[Loose]:
    return EventSpec(name, Loose, "an event of the test's own")
