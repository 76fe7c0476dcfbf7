"""Events as domain code declares them: a name on the wire and the model of its data.

Every event a user can be told is declared once, next to its model, as an
:class:`EventSpec`; code that stages, publishes or sends an event names the spec,
never a string, and the data must be the spec's model: mypy checks it, and
:meth:`EventSpec.encode` refuses anything else at run time, so a mismatch fails in a
test rather than reaching a client::

    BOOKING_OFFERED = EventSpec("booking.offered", BookingOffered, "to the provider: ...")
    staged.add(provider_id, BOOKING_OFFERED, BookingOffered(booking=view))

``logged`` events go to the user's event log (a ``seq``, replayed on resume, pushed
when unacknowledged); the others are live frames for one socket
(:class:`kernel.devices.Devices`), worthless later. The registry documents every spec
in the OpenRPC document (``x-events``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel

from kernel.push import PushPolicy

M = TypeVar("M", bound=BaseModel)

_NAME = re.compile(r"^[a-z][A-Za-z]*(\.[a-z][A-Za-z]*)*$")


@dataclass(frozen=True, slots=True)
class EventSpec(Generic[M]):
    name: str
    data: type[M]
    summary: str
    logged: bool = True  # in the user's log (params {seq, data}); else live only
    omit_none: bool = False  # fields that are None are left out rather than null

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"event name {self.name!r}: lowerCamel words, dotted")
        if not (isinstance(self.data, type) and issubclass(self.data, BaseModel)):
            raise TypeError(f"event {self.name}: data must be a pydantic model")

    def encode(self, data: M) -> bytes:
        """The data as the log stores it and clients read it (camelCase JSON)."""
        if not isinstance(data, self.data):
            raise TypeError(
                f"event {self.name} carries {self.data.__name__}, not {type(data).__name__}"
            )
        return data.__pydantic_serializer__.to_json(
            data, by_alias=True, exclude_none=self.omit_none
        )

    def decode(self, payload: bytes | str) -> M:
        """The data back from its JSON (a push rendered from a stored event)."""
        return self.data.model_validate_json(payload)


#: Turns an event's data into the push notification an offline user gets.
PushRenderer = Callable[[M], PushPolicy]


@dataclass(frozen=True, slots=True)
class PushedEvent(Generic[M]):
    """An event whose unacknowledged copies go out as push notifications, and how."""

    spec: EventSpec[M]
    render: PushRenderer[M]

    def policy(self, payload: bytes | str) -> PushPolicy:
        return self.render(self.spec.decode(payload))


def encode_model(data: BaseModel) -> bytes:
    """Any model as camelCase JSON (a method's answer)."""
    return data.__pydantic_serializer__.to_json(data, by_alias=True)
