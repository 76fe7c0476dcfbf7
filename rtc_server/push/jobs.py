"""The jobs of push delivery (typed: :class:`kernel.jobs.JobSpec`).

The payloads keep their one-letter keys: they are the rows of ``jobs`` already queued
by running servers, and ``push.send``'s are made in SQL from ``push.event``'s
(:func:`storage.push.decide_and_enqueue` adds ``d``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from kernel.jobs import JobPayload, JobSpec, Tick


class PushEvent(JobPayload):
    """Decide which devices of ``user`` get the push of event ``seq``."""

    user: int = Field(alias="u")
    seq: int = Field(alias="s")
    event: str = Field(alias="e")
    notice: dict[str, Any] = Field(alias="n")  # PushNotice.to_json()
    published: datetime = Field(alias="t")


class PushSend(PushEvent):
    """Send the push of event ``seq`` to one device."""

    device: str = Field(alias="d")


PUSH_EVENT = JobSpec("push.event", PushEvent)
PUSH_SEND = JobSpec("push.send", PushSend)
PUSH_INTENTS = JobSpec("push.intents", Tick)
PUSH_PRUNE = JobSpec("push.prune", Tick)
