"""What was pushed to a user, for support: ``admin.push.history`` (admins only).

Each push decided for a user's event keeps, on its delivery rows (``push_deliveries``,
one per device), what it said, to which kind of device, and how the provider answered
(:func:`storage.push.sent_to`). They are kept ``push.retention_days`` and pruned by
``push.prune``. Events never pushed (acknowledged in time, category switched off, no
device) leave no row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from kernel.errors import NotFound
from kernel.rpc.cursors import Cursor, decode_cursor, next_cursor
from kernel.rpc.registry import Access, Caller, MethodRegistry, Params, Result
from storage import accounts
from storage import push as push_store
from storage.database import Database

Id = Annotated[int, Field(ge=1, le=2**63 - 1)]
MAX_PAGE = 100


class PushHistory(Params):
    user_id: Id
    cursor: Cursor | None = Field(None, description="nextCursor of the previous page")
    limit: int = Field(20, ge=1, le=MAX_PAGE, description="pushed events per page")


class PushDeliveryView(Result):
    """The push of one event to one device."""

    device_id: str
    platform: Literal["android", "ios", "web"] | None = Field(
        description="the device's, when the push was decided (null: the device was gone)"
    )
    provider: Literal["fcm", "apns", "webpush"] | None
    status: Literal["pending", "sent", "skipped", "failed"]
    reason: str | None = Field(
        description="sent; skipped: acknowledged, device_gone; failed: token_invalid, "
        "expired, the provider's code, gave_up:<code>"
    )
    attempts: int = Field(description="calls to the provider")
    http_status: int | None = Field(description="the provider's answer to the last attempt")
    provider_code: str | None = Field(description="its error code (FCM errorCode, APNs reason)")
    decided_at: datetime | None = Field(description="when it was sent, skipped or failed")


class PushSent(Result):
    """One event pushed to the user, on each device it was decided for."""

    seq: int = Field(description="the event's seq in the user's log")
    event: str | None = Field(description="null: pushed before these details were kept")
    category: str | None
    title: str | None
    body: str | None
    created_at: datetime = Field(description="when the push was decided")
    deliveries: list[PushDeliveryView]


class PushHistoryPage(Result):
    pushes: list[PushSent]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null: no more")


def _pushes(rows: list[push_store.SentRow]) -> list[PushSent]:
    pushes: list[PushSent] = []
    for r in rows:
        delivery = PushDeliveryView(
            device_id=r.device_id,
            platform=r.platform,
            provider=r.provider,
            status=r.status,
            reason=r.reason,
            attempts=r.attempts,
            http_status=r.http_status,
            provider_code=r.provider_code,
            decided_at=r.decided_at,
        )
        if pushes and pushes[-1].seq == r.seq:
            pushes[-1].deliveries.append(delivery)
            pushes[-1].created_at = min(pushes[-1].created_at, r.created_at)
            continue
        pushes.append(
            PushSent(
                seq=r.seq,
                event=r.event,
                category=r.category,
                title=r.title,
                body=r.body,
                created_at=r.created_at,
                deliveries=[delivery],
            )
        )
    return pushes


class PushHistoryService:
    def __init__(self, db: Database) -> None:
        self._db = db

    def register(self, registry: MethodRegistry) -> None:
        registry.add(
            "admin.push.history",
            self.history,
            params=PushHistory,
            result=PushHistoryPage,
            access=Access.ADMIN,
        )

    async def history(self, caller: Caller, params: PushHistory) -> PushHistoryPage:
        """The pushes sent to a user, newest first: what, when, to which device, how
        it ended (kept push.retention_days)."""
        query = ("admin.push.history", params.user_id)
        rows = await push_store.sent_to(
            self._db,
            params.user_id,
            before_seq=decode_cursor(params.cursor, query),
            limit=params.limit + 1,
        )
        if not rows and await accounts.get_user(self._db, params.user_id) is None:
            raise NotFound("no such user", field="userId")
        pushes = _pushes(rows)
        return PushHistoryPage(
            pushes=pushes[: params.limit],
            next_cursor=next_cursor([p.seq for p in pushes], params.limit, query),
        )
