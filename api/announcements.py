"""Announcements: a word from the operators to every customer, every provider, or both
(method ``admin.announce``, event ``announcement.created``).

An announcement is an event in each recipient's log: apps online get it live, others
when they resume (within the log's window); with ``push``, users who allow promotional
pushes also get a push. The fan-out runs as jobs, a page of the audience each
(:data:`SEND`): the request answers at once, and a worker writes one statement per
chunk of users (:meth:`kernel.publisher.EventPublisher.publish_many`), then enqueues
the next page. A page whose job is retried after a crash may reach some of its users
twice; the event carries the announcement's id so apps show it once.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from kernel.clock import Clock
from kernel.events import EventSpec
from kernel.feature import Feature, Kit
from kernel.jobs import Job, JobPayload, JobQueue, JobSpec
from kernel.publisher import EventPublisher
from kernel.push import PushNotice, PushPolicy
from kernel.rpc.registry import Access, Caller, IdempotentParams, Result
from kernel.rpc.text import Line, Paragraphs
from storage import admin
from storage.database import Database

log = logging.getLogger("rtc.announcements")

# Recipients per job: one page of the audience, written in chunks by the publisher.
PAGE = 5000

ROLES: dict[str, list[str]] = {
    "customers": ["customer"],
    "providers": ["provider"],
    "everyone": ["customer", "provider"],
}


class Announce(IdempotentParams):
    audience: Literal["customers", "providers", "everyone"]
    title: Annotated[str, Line(1, 80)]
    body: Annotated[str, Paragraphs(1, 500)]
    push: bool = Field(False, description="also push it to users who allow promotional pushes")


class Announced(Result):
    announcement_id: str
    at: datetime = Field(description="when it was posted; delivery follows within seconds")


class Announcement(Result):
    """``announcement.created``: show it once per ``announcementId``."""

    announcement_id: str
    title: str
    body: str
    at: datetime


ANNOUNCEMENT = EventSpec(
    "announcement.created", Announcement, "to every user of an audience: a word from the operators"
)


class SendPage(JobPayload):
    announcement_id: str
    audience: Literal["customers", "providers", "everyone"]
    title: str
    body: str
    at: datetime
    push: bool
    after_id: int = 0  # the page starts after this user id


SEND = JobSpec("announcements.send", SendPage, max_attempts=5)


class Announcements:
    def __init__(
        self, db: Database, jobs: JobQueue, publisher: EventPublisher, clock: Clock
    ) -> None:
        self._db = db
        self._jobs = jobs
        self._publisher = publisher
        self._clock = clock

    async def announce(self, caller: Caller, params: Announce) -> Announced:
        """Tell every customer, provider or both (an event; a push to those who allow it)."""
        now = self._clock.now()
        announcement_id = uuid.uuid4().hex
        await self._jobs.enqueue(
            SEND,
            SendPage(
                announcement_id=announcement_id,
                audience=params.audience,
                title=params.title,
                body=params.body,
                at=now,
                push=params.push,
            ),
        )
        log.info(
            "announcement posted",
            extra={
                "announcement": announcement_id,
                "audience": params.audience,
                "admin": caller.user_id,
            },
        )
        return Announced(announcement_id=announcement_id, at=now)

    async def send_page(self, job: Job[SendPage]) -> None:
        """The ``announcements.send`` job: one page of the audience, then the next."""
        page = job.payload
        users = await admin.audience(self._db, ROLES[page.audience], page.after_id, PAGE)
        if not users:
            return
        data = Announcement(
            announcement_id=page.announcement_id, title=page.title, body=page.body, at=page.at
        )
        push = None
        if page.push:
            push = PushPolicy(
                PushNotice(
                    page.title,
                    page.body,
                    "promotional",
                    collapse_key=f"announcement:{page.announcement_id}",
                    data={"announcementId": page.announcement_id},
                )
            )
        await self._publisher.publish_many(users, ANNOUNCEMENT, data, push=push)
        if len(users) == PAGE:
            following = page.model_copy(update={"after_id": users[-1]})
            await self._jobs.enqueue(
                SEND,
                following,
                dedup_key=f"announcement:{page.announcement_id}:{users[-1]}",
            )


class AnnouncementsFeature(Feature):
    name = "announcements"

    async def install(self, kit: Kit) -> None:
        self.service = Announcements(kit.db, kit.jobs, kit.publisher, kit.clock)
        kit.methods.add(
            "admin.announce",
            self.service.announce,
            params=Announce,
            result=Announced,
            access=Access.ADMIN,
        )
        kit.event(ANNOUNCEMENT)
        kit.job(SEND, self.service.send_page)
