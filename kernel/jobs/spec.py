"""Kinds of jobs as features declare them: a name in the queue and the model of its payload.

A job is enqueued with its spec and a payload of the spec's model, and handled by a
function that gets the payload back as that model::

    MIX = JobSpec("recordings.mix", MixRecording)
    await queue.enqueue(MIX, MixRecording(recording_id=7), conn=conn)
    kit.job(MIX, recordings.mix)            # async def mix(job: Job[MixRecording])

A payload the model does not accept (a row written by an older release, a hand-made
row) fails its job at once, with the reason, rather than retrying a handler that cannot
read it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

P = TypeVar("P", bound=BaseModel)

_KIND = re.compile(r"^[a-z][A-Za-z]*(\.[a-z][A-Za-z]*)*$")


class JobPayload(BaseModel):
    """Base of job payloads: immutable; keys the model does not know are ignored (a
    newer release may add some while older workers still run)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class Tick(JobPayload):
    """The payload of a scheduled job: the slot it runs for."""

    slot: datetime | None = None


@dataclass(frozen=True, slots=True)
class JobSpec(Generic[P]):
    kind: str
    payload: type[P]
    max_attempts: int | None = None  # None: the queue's default

    def __post_init__(self) -> None:
        if not _KIND.match(self.kind):
            raise ValueError(f"job kind {self.kind!r}: lowerCamel words, dotted")
        if not (isinstance(self.payload, type) and issubclass(self.payload, BaseModel)):
            raise TypeError(f"job {self.kind}: payload must be a pydantic model")

    def encode(self, payload: P) -> str:
        if not isinstance(payload, self.payload):
            raise TypeError(
                f"job {self.kind} carries {self.payload.__name__}, not {type(payload).__name__}"
            )
        return payload.__pydantic_serializer__.to_json(payload, by_alias=True).decode()

    def decode(self, raw: str | bytes) -> P:
        return self.payload.model_validate_json(raw)


@dataclass(frozen=True, slots=True)
class Job(Generic[P]):
    """What a handler gets: one attempt at one job."""

    id: int
    kind: str
    payload: P
    attempt: int  # 1 on the first run
    max_attempts: int

    @property
    def last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts


@dataclass(frozen=True, slots=True)
class JobHandler(Generic[P]):
    """A spec and the function that runs its jobs (what a worker is given)."""

    spec: JobSpec[P]
    # Returns None, or how many items the run touched (counted in rtc_job_items_total
    # and logged: scheduled jobs say what they did).
    run: Callable[[Job[P]], Awaitable[int | None]]

    def job(self, id: int, raw: str, attempt: int, max_attempts: int) -> Job[P]:
        """The job of a claimed row; ``ValueError`` if its payload is unreadable."""
        return Job(id, self.spec.kind, self.spec.decode(raw), attempt, max_attempts)


def handlers(*pairs: JobHandler[Any]) -> dict[str, JobHandler[Any]]:
    """Handlers by kind; a kind given twice is an error."""
    by_kind: dict[str, JobHandler[Any]] = {}
    for handler in pairs:
        if handler.spec.kind in by_kind:
            raise ValueError(f"job {handler.spec.kind} handled twice")
        by_kind[handler.spec.kind] = handler
    return by_kind
