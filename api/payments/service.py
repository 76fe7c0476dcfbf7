"""Payments (methods ``payments.*``, ``listings.renew``, ``admin.payments.*``; event
``payment.updated``): providers pay to be listed, customers buy labour access.

The server sets every price (a client never sends an amount) and opens the order at
the gateway itself. Whatever then tells the server about an order (the payer's
browser coming back, the gateway's webhook, the app's ``payments.verify``, the
reconciler), the server asks the gateway's Transaction Status API and settles the
order through one path, :meth:`PaymentService.settle`:

- one transaction, the payment's row locked, so any number of concurrent settlements
  on any number of instances change it one after the other;
- :func:`api.payments.rules.settle` compares the answer with what was ordered (order,
  merchant, amount, currency): a mismatch is never fulfilled, it is a security event
  and the order goes to review;
- the move to ``paid`` buys the period (one ``paid_periods`` row per payment, so a
  second fulfilment finds it), extends the listing or the labour access from its
  current end, and stages ``payment.updated``, one notification and its push, all
  committed with the change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from api.notifications import NotificationType, new_notification, stage_notification
from api.payments import rules
from api.payments.gateway import (
    ForgedAnswer,
    Gateway,
    GatewayDown,
    GatewayError,
    GatewayRefusal,
    RefundStatus,
    rupees,
)
from api.payments.gateway import Status as GatewayStatus
from api.payments.metrics import PaymentMetrics
from api.payments.models import (
    PAYMENT_UPDATED,
    PRODUCT_OF,
    WIRE_PRODUCT,
    AdminListPayments,
    AdminPayment,
    AdminPaymentDetail,
    AdminPaymentPage,
    Checkout,
    CheckoutPage,
    GatewayCallView,
    Initiate,
    LabourAccess,
    ListingPeriod,
    ListPayments,
    OrderRef,
    Payment,
    PaymentChange,
    PaymentPage,
    PaymentUpdated,
    Refund,
    RenewListing,
    SecurityEventView,
)
from api.payments.rules import Status
from api.payments.settings import PaymentSettings
from kernel.clock import Clock
from kernel.errors import (
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    StateConflict,
    Unprocessable,
)
from kernel.jobs import Job, Tick
from kernel.outbox import Outbox, StagedEvents
from kernel.rpc.cursors import decode_cursor, next_cursor
from kernel.rpc.registry import Caller, Empty
from storage import payments as store
from storage.database import Database
from storage.events import Executor
from storage.payments import PaymentRow

log = logging.getLogger("rtc.payments")

# The payer's notification is pushed unless a device acknowledged it by then.
PUSH_AFTER = 30.0
_RECONCILE_BATCH = 50
_EXPIRE_BATCH = 500
# A free listing lasts a year, and can be renewed in its last 30 days (reference 8.5).
FREE_LISTING = timedelta(days=365)
FREE_RENEWAL_WINDOW = timedelta(days=30)

Source = Literal["callback", "webhook", "verify", "reconcile"]

# Statuses no answer of the gateway can change (refunds are followed by refund status).
FINAL = frozenset({Status.PAID, Status.REVIEW, Status.REFUND_PENDING, Status.REFUNDED})

# What the payer is told of a change (texts: api.notifications.CATALOGUE).
_TOLD: dict[Status, NotificationType] = {
    Status.PAID: NotificationType.PAYMENT_SUCCESS,
    Status.FAILED: NotificationType.PAYMENT_FAILED,
    Status.REFUNDED: NotificationType.PAYMENT_REFUNDED,
}


@dataclass(frozen=True, slots=True)
class Settled:
    """An order after a settlement: its row, and whether this settlement changed it."""

    payment: PaymentRow
    changed: bool


class PaymentService:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        clock: Clock,
        settings: PaymentSettings,
        metrics: PaymentMetrics,
        *,
        timezone: str,
        public_url: Callable[[], str],
    ) -> None:
        self._db = db
        self._outbox = outbox
        self._clock = clock
        self._settings = settings
        self._metrics = metrics
        self._zone = ZoneInfo(timezone)
        self._public_url = public_url  # where the payer's browser comes back to
        self.gateway: Gateway | None = None  # set once the HTTP port listens
        self._asking: dict[str, asyncio.Future[GatewayStatus]] = {}  # status calls in flight

    def _gateway(self) -> Gateway:
        if self.gateway is None:
            raise ServiceUnavailable("payments are starting; try again")
        return self.gateway

    # --- Starting an order -------------------------------------------------------------

    async def initiate(self, caller: Caller, params: Initiate) -> Checkout:
        """Open an order at the gateway for a listing fee or labour access; the answer
        is what the app's checkout needs. The server sets the price."""
        user_id = caller.require_user()
        gateway = self._gateway()
        product = PRODUCT_OF[params.product]
        now = self._clock.now()
        order_id = rules.order_id(now, product)
        async with self._db.transaction() as conn:
            await self._check_rate(conn, user_id, now)
            if product == "listing":
                assert params.provider_service_id is not None
                amount, currency = await self._listing_price(
                    conn, caller, params.provider_service_id, now
                )
            else:
                amount, currency = await self._labour_price(caller)
            if currency != gateway.currency:
                raise Unprocessable(f"payments in {currency} are not accepted")
            await store.create(
                conn,
                store.NewPayment(
                    order_id=order_id,
                    user_id=user_id,
                    product=product,
                    provider_service_id=params.provider_service_id,
                    amount_paise=amount,
                    currency=currency,
                    gateway=gateway.name,
                    merchant_id=gateway.merchant_id,
                    next_check_at=now + timedelta(seconds=self._settings.check_after),
                ),
                now,
            )
        callback = self.callback_url()
        try:
            started = await gateway.initiate(order_id, amount, f"U{user_id}", callback)
        except GatewayError as failed:
            await self._initiate_failed(order_id, failed)
            raise
        self._metrics.orders.labels("created").inc()
        log.info("payment order created", extra={"order": order_id, "user": user_id})
        return Checkout(
            order_id=order_id,
            product=params.product,
            amount_paise=amount,
            amount=rupees(amount),
            currency=currency,
            mid=gateway.merchant_id,
            txn_token=started.txn_token,
            checkout=CheckoutPage(
                host=started.host, payment_page_url=started.page_url, callback_url=callback
            ),
        )

    def callback_url(self) -> str:
        base = self._settings.public_url or self._public_url()
        return f"{base}/payments/paytm/callback"

    async def _check_rate(self, conn: Executor, user_id: int, now: datetime) -> None:
        limit = self._settings.max_initiations_per_hour
        if await store.recent_initiations(conn, user_id, now - timedelta(hours=1)) >= limit:
            raise RateLimited(
                f"at most {limit} payments started per hour", retry_after=60.0, limit=limit
            )

    async def _listing_price(
        self, conn: Executor, caller: Caller, provider_service_id: int, now: datetime
    ) -> tuple[int, str]:
        if caller.role != "provider":
            raise Forbidden("listing fees are paid by providers")
        listing = await store.lock_listing(conn, provider_service_id)
        if listing is None or listing.provider_id != caller.user_id or listing.status == "removed":
            raise NotFound("no such listing of yours", field="providerServiceId")
        if not listing.is_paid:
            raise Unprocessable(
                "this listing is free: renew it with listings.renew", reason="free_listing"
            )
        horizon = now + timedelta(days=self._settings.listing_horizon_days)
        if listing.status == "active" and (
            listing.active_until is None or listing.active_until > horizon
        ):
            raise Conflict(
                "this listing is paid for far enough ahead",
                reason="paid_ahead",
                activeUntil=None
                if listing.active_until is None
                else listing.active_until.isoformat(),
            )
        return listing.price_paise, listing.currency

    async def _labour_price(self, caller: Caller) -> tuple[int, str]:
        if caller.role != "customer":
            raise Forbidden("labour access is bought by customers")
        return self._settings.labour_access_price_paise, "INR"

    async def _initiate_failed(self, order_id: str, failed: GatewayError) -> None:
        """The gateway did not open the order: it fails, and the caller hears why."""
        now = self._clock.now()
        detail = {"error": str(failed)}
        async with self._db.transaction() as conn:
            payment = await store.lock(conn, order_id)
            if payment is not None and payment.status == Status.CREATED:
                await store.change(
                    conn,
                    payment.id,
                    before=payment.status,
                    after=Status.FAILED,
                    source="initiate",
                    now=now,
                    detail=detail,
                    next_check_at=None,
                )
        self._metrics.orders.labels("failed").inc()
        if isinstance(failed, GatewayDown):
            raise ServiceUnavailable("the payment gateway is unavailable; try again") from failed
        if isinstance(failed, GatewayRefusal):
            raise Unprocessable(
                f"the payment gateway refused the order: {failed.message}",
                reason="gateway_refused",
                gatewayCode=failed.code,
            ) from failed
        raise ServiceUnavailable("the payment gateway's answer could not be trusted") from failed

    # --- The one way an order settles ---------------------------------------------------

    async def settle(self, order_id: str, source: Source, *, ip: str | None = None) -> Settled:
        """Ask the gateway about the order and apply its answer (see the module). An
        order already final (paid, in review, refunded) is not asked about again:
        nothing the gateway says could change it (a storm of duplicate callbacks costs
        one read each)."""
        gateway = self._gateway()
        current = await store.get(self._db, order_id)
        if current is None:
            raise NotFound("no such order", field="orderId")
        if current.status in FINAL:
            return Settled(current, False)
        try:
            answer = await self._status_once(gateway, order_id)
        except ForgedAnswer as forged:
            await self._security(
                "forged_answer", order_id, None, ip, {"source": source, "error": str(forged)}
            )
            raise
        payment = await self._apply(order_id, answer, source)
        return payment

    async def _status_once(self, gateway: Gateway, order_id: str) -> GatewayStatus:
        """The gateway's answer about an order, asked once however many settlements of
        it run at once on this instance (a storm of callbacks; the gateway rate-limits
        its status API): they share the call in flight."""
        asking = self._asking.get(order_id)
        if asking is None:
            asking = asyncio.ensure_future(gateway.status(order_id))
            self._asking[order_id] = asking
            asking.add_done_callback(lambda _: self._asking.pop(order_id, None))
        return await asyncio.shield(asking)

    async def _apply(self, order_id: str, answer: GatewayStatus, source: Source) -> Settled:
        now = self._clock.now()
        staged = self._outbox.stage()
        async with self._db.transaction() as conn:
            payment = await store.lock(conn, order_id)
            if payment is None:
                raise NotFound("no such order", field="orderId")
            before = Status(payment.status)
            expected = rules.Expected(
                payment.order_id, payment.amount_paise, payment.currency, payment.merchant_id
            )
            decision = rules.settle(before, expected, answer.observed)
            if decision.mismatch is not None:
                await self._security(
                    f"{decision.mismatch}_mismatch",
                    order_id,
                    payment.id,
                    None,
                    _observed(answer, source),
                    conn=conn,
                )
            if decision.after == before and not decision.fulfil:
                return Settled(payment, False)
            columns: dict[str, Any] = {
                "gateway_txn_id": answer.txn_id,
                "bank_txn_id": answer.bank_txn_id,
                "payment_mode": answer.payment_mode,
                "result_code": answer.code,
                "result_message": answer.message,
            }
            if decision.after not in rules.OPEN:
                columns["next_check_at"] = None
            if decision.fulfil:
                columns["paid_at"] = now
            await store.change(
                conn,
                payment.id,
                before=before,
                after=decision.after,
                source=source,
                now=now,
                detail=_observed(answer, source),
                **columns,
            )
            if decision.fulfil:
                await self._fulfil(conn, payment, now)
            changed = await store.lock(conn, order_id)
            assert changed is not None
            await self._tell(conn, staged, changed, now)
            await staged.write(conn)
        await staged.deliver()
        self._metrics.orders.labels(decision.after.value).inc()
        log.info(
            "payment settled",
            extra={
                "order": order_id,
                "from": before.value,
                "to": decision.after.value,
                "source": source,
            },
        )
        return Settled(changed, True)

    async def _fulfil(self, conn: Executor, payment: PaymentRow, now: datetime) -> None:
        """Buy the period: one per payment, extending from the current end."""
        if payment.product == "listing":
            if payment.provider_service_id is None:
                return  # the registration is gone: the payment stays for the records
            listing = await store.lock_listing(conn, payment.provider_service_id)
            assert listing is not None
            current = listing.active_until if listing.status == "active" else None
            period = rules.listing_period(
                now,
                current,
                cycle=listing.billing_cycle,
                interval=listing.billing_interval,
                zone=self._zone,
            )
            if await store.add_period(conn, payment, period.starts_at, period.ends_at):
                await store.set_listing(conn, listing.id, "active", period.ends_at, now)
            return
        if payment.user_id is None:
            return
        current_end = await store.lock_labour_access(conn, payment.user_id)
        period = rules.labour_period(now, current_end, self._settings.labour_access_days)
        if await store.add_period(conn, payment, period.starts_at, period.ends_at):
            assert period.ends_at is not None
            await store.set_labour_access(conn, payment.user_id, period.ends_at, now)

    async def _tell(
        self, conn: Executor, staged: StagedEvents, payment: PaymentRow, now: datetime
    ) -> None:
        """The payer's event, and for a final outcome their notification (pushed)."""
        if payment.user_id is None:
            return
        staged.add(payment.user_id, PAYMENT_UPDATED, PaymentUpdated(payment=view(payment)))
        kind = _TOLD.get(Status(payment.status))
        if kind is None:
            return
        until = None
        if payment.status == Status.PAID and payment.period_ends_at is not None:
            until = payment.period_ends_at.astimezone(self._zone).strftime("%d %b %Y")
        values = {
            "amount": rupees(payment.amount_paise),
            "what": "your listing" if payment.product == "listing" else "labour access",
            "until": until,
        }
        row = await new_notification(conn, payment.user_id, kind, values, now=now)
        stage_notification(staged, row, push_after=PUSH_AFTER, now=now)

    async def find(self, order_id: str) -> PaymentRow | None:
        return await store.get(self._db, order_id)

    def count_security_event(self, kind: str, *, first: bool) -> None:
        """A security event counted but not written: its address wrote too many this
        minute (logged for the first of them)."""
        self._metrics.security_events.labels(kind).inc()
        if first:
            log.warning("payment security events not recorded: too many", extra={"kind": kind})

    async def security_event(
        self, kind: str, order_id: str | None, ip: str | None, detail: dict[str, Any]
    ) -> None:
        """Record a security event (the callback's checks)."""
        payment = await store.get(self._db, order_id) if order_id else None
        await self._security(kind, order_id, payment.id if payment else None, ip, detail)

    async def _security(
        self,
        kind: str,
        order_id: str | None,
        payment_id: int | None,
        ip: str | None,
        detail: dict[str, Any],
        *,
        conn: Executor | None = None,
    ) -> None:
        self._metrics.security_events.labels(kind).inc()
        log.warning("payment security event", extra={"kind": kind, "order": order_id, "ip": ip})
        await store.security_event(
            conn or self._db,
            kind,
            order_id=order_id,
            payment_id=payment_id,
            source_ip=ip,
            detail=detail,
            now=self._clock.now(),
        )

    # --- The payer ---------------------------------------------------------------------

    async def _own(self, caller: Caller, order_id: str) -> PaymentRow:
        user_id = caller.require_user()
        payment = await store.get(self._db, order_id)
        if payment is None or payment.user_id != user_id:
            raise NotFound("no such order of yours", field="orderId")
        return payment

    async def verify(self, caller: Caller, params: OrderRef) -> Payment:
        """After the checkout: the server asks the gateway and settles the order."""
        payment = await self._own(caller, params.order_id)
        try:
            settled = await self.settle(payment.order_id, "verify")
        except GatewayDown as down:
            raise ServiceUnavailable("the payment gateway is unavailable; try again") from down
        except GatewayRefusal as refused:
            raise Unprocessable(
                f"the payment gateway does not know this order: {refused.message}",
                reason="gateway_refused",
            ) from refused
        except ForgedAnswer as forged:
            raise ServiceUnavailable(
                "the payment gateway's answer could not be trusted"
            ) from forged
        return view(settled.payment)

    async def get(self, caller: Caller, params: OrderRef) -> Payment:
        """One of your payments."""
        return view(await self._own(caller, params.order_id))

    async def list(self, caller: Caller, params: ListPayments) -> PaymentPage:
        """Your payments, newest first."""
        user_id = caller.require_user()
        query = ("payments", user_id)
        rows = await store.page(
            self._db,
            user_id=user_id,
            status=None,
            before_id=decode_cursor(params.cursor, query),
            limit=params.limit + 1,
        )
        return PaymentPage(
            payments=[view(r) for r in rows[: params.limit]],
            next_cursor=next_cursor([r.id for r in rows], params.limit, query),
        )

    async def labour_access(self, caller: Caller, params: Empty) -> LabourAccess:
        """Your labour access: until when, and what more costs."""
        until = await store.labour_access_until(self._db, caller.require_user())
        now = self._clock.now()
        return LabourAccess(
            active=until is not None and until > now,
            active_until=until,
            price_paise=self._settings.labour_access_price_paise,
            days=self._settings.labour_access_days,
        )

    # --- Admins ------------------------------------------------------------------------

    async def admin_list(self, caller: Caller, params: AdminListPayments) -> AdminPaymentPage:
        """Every payment (of one status or all), newest first."""
        query = ("admin.payments", params.status)
        rows = await store.page(
            self._db,
            user_id=None,
            status=params.status,
            before_id=decode_cursor(params.cursor, query),
            limit=params.limit + 1,
        )
        return AdminPaymentPage(
            payments=[admin_view(r) for r in rows[: params.limit]],
            next_cursor=next_cursor([r.id for r in rows], params.limit, query),
        )

    async def admin_get(self, caller: Caller, params: OrderRef) -> AdminPaymentDetail:
        """One payment with its changes, its calls to the gateway and its security events."""
        payment = await store.get(self._db, params.order_id)
        if payment is None:
            raise NotFound("no such order", field="orderId")
        changes = await store.events_of(self._db, payment.id)
        calls = await store.calls_of(self._db, payment.order_id)
        security = await store.security_events(self._db, payment.order_id)
        return AdminPaymentDetail(
            payment=admin_view(payment),
            changes=[
                PaymentChange(
                    from_status=c.from_status,
                    to_status=c.to_status,
                    source=c.source,
                    detail=c.detail,
                    at=c.created_at,
                )
                for c in changes
            ],
            gateway_calls=[
                GatewayCallView(
                    endpoint=c.endpoint,
                    http_status=c.http_status,
                    latency_ms=c.latency_ms,
                    request=c.request,
                    response=c.response,
                    error=c.error,
                    at=c.created_at,
                )
                for c in calls
            ],
            security_events=[
                SecurityEventView(
                    kind=s.kind, source_ip=s.source_ip, detail=s.detail, at=s.created_at
                )
                for s in security
            ],
        )

    async def refund(self, caller: Caller, params: Refund) -> AdminPayment:
        """Refund a paid order in full through the gateway; what it bought ends now."""
        gateway = self._gateway()
        payment = await store.get(self._db, params.order_id)
        if payment is None:
            raise NotFound("no such order", field="orderId")
        if payment.status != Status.PAID or payment.gateway_txn_id is None:
            raise StateConflict(
                f"the payment is {payment.status}: only a paid one can be refunded",
                status=payment.status,
                action="refund",
            )
        refund_id = refund_id_of(payment.order_id)
        try:
            answer = await gateway.refund(
                payment.order_id, payment.gateway_txn_id, refund_id, payment.amount_paise
            )
        except GatewayDown as down:
            raise ServiceUnavailable("the payment gateway is unavailable; try again") from down
        except GatewayRefusal as refused:
            if refused.code != "617":  # raised already (a retried request): go on
                raise Unprocessable(
                    f"the payment gateway refused the refund: {refused.message}",
                    reason="gateway_refused",
                    gatewayCode=refused.code,
                ) from refused
            answer = RefundStatus("pending", refused.code, refused.message)
        now = self._clock.now()
        staged = self._outbox.stage()
        async with self._db.transaction() as conn:
            locked = await store.lock(conn, payment.order_id)
            assert locked is not None
            if locked.status != Status.PAID:
                raise StateConflict(
                    f"the payment is {locked.status} now", status=locked.status, action="refund"
                )
            after = Status.REFUNDED if answer.outcome == "success" else Status.REFUND_PENDING
            await store.change(
                conn,
                locked.id,
                before=locked.status,
                after=after,
                source="refund",
                now=now,
                detail={"by": caller.user_id, "reason": params.reason, "code": answer.code},
                refund_id=refund_id,
                refund_reason=params.reason,
                next_check_at=None
                if after is Status.REFUNDED
                else now + timedelta(seconds=self._settings.check_after),
                refunded_at=now if after is Status.REFUNDED else None,
            )
            await self._end_period(conn, locked, now)
            changed = await store.lock(conn, payment.order_id)
            assert changed is not None
            await self._tell(conn, staged, changed, now)
            await staged.write(conn)
        await staged.deliver()
        self._metrics.orders.labels(after.value).inc()
        log.info("payment refunded", extra={"order": payment.order_id, "admin": caller.user_id})
        return admin_view(changed)

    async def _end_period(self, conn: Executor, payment: PaymentRow, now: datetime) -> None:
        """A refund ends what the payment bought: the listing or the access now runs to
        the end of the other periods still bought (or ends now)."""
        await store.end_period(conn, payment.id, now)
        if payment.product == "listing" and payment.provider_service_id is not None:
            listing = await store.lock_listing(conn, payment.provider_service_id)
            if listing is not None and listing.status == "active":
                end = await store.listing_end(conn, listing.id, now)
                status = "active" if end is not None else "expired"
                await store.set_listing(
                    conn, listing.id, status, end if end is not None else now, now
                )
        elif payment.product == "labour_access" and payment.user_id is not None:
            await store.lock_labour_access(conn, payment.user_id)
            end = await store.labour_end(conn, payment.user_id, now)
            await store.set_labour_access(conn, payment.user_id, end or now, now)

    # --- Jobs --------------------------------------------------------------------------

    async def reconcile(self, job: Job[Tick]) -> None:
        """The ``payments.reconcile`` job: ask the gateway about orders not final."""
        await self.reconcile_due()

    async def reconcile_due(self) -> int:
        """One round; how many orders were asked about."""
        if self.gateway is None:
            return 0
        now = self._clock.now()
        due = await store.due(self._db, now, _RECONCILE_BATCH)
        for payment in due:
            await self._reconcile_one(payment, now)
        return len(due)

    async def _reconcile_one(self, payment: PaymentRow, now: datetime) -> None:
        s = self._settings
        try:
            if payment.status == Status.REFUND_PENDING:
                await self._refund_check(payment)
            else:
                settled = await self.settle(payment.order_id, "reconcile")
                payment = settled.payment
        except (GatewayDown, GatewayRefusal, ForgedAnswer) as failed:
            log.warning(
                "payment not reconciled yet",
                extra={"order": payment.order_id, "error": str(failed)},
            )
        if payment.status not in (*rules.OPEN, Status.REFUND_PENDING):
            return
        age = (now - payment.created_at).total_seconds()
        async with self._db.transaction() as conn:
            locked = await store.lock(conn, payment.order_id)
            if locked is None or locked.status not in (*rules.OPEN, Status.REFUND_PENDING):
                return
            if age >= s.give_up_after and locked.status in rules.OPEN:
                await store.change(
                    conn,
                    locked.id,
                    before=locked.status,
                    after=Status.EXPIRED,
                    source="reconcile",
                    now=now,
                    detail={"age_seconds": int(age)},
                    next_check_at=None,
                )
                self._metrics.orders.labels("expired").inc()
                return
            wait = min(s.check_backoff_max, s.check_after * 2 ** min(locked.checks + 1, 30))
            await store.checked(conn, locked.id, next_check_at=now + timedelta(seconds=wait))

    async def _refund_check(self, payment: PaymentRow) -> None:
        assert payment.refund_id is not None
        answer = await self._gateway().refund_status(payment.order_id, payment.refund_id)
        if answer.outcome == "pending":
            return
        now = self._clock.now()
        staged = self._outbox.stage()
        async with self._db.transaction() as conn:
            locked = await store.lock(conn, payment.order_id)
            if locked is None or locked.status != Status.REFUND_PENDING:
                return
            after = Status.REFUNDED if answer.outcome == "success" else Status.REVIEW
            await store.change(
                conn,
                locked.id,
                before=locked.status,
                after=after,
                source="reconcile",
                now=now,
                detail={"refund": answer.outcome, "code": answer.code},
                next_check_at=None,
                refunded_at=now if after is Status.REFUNDED else None,
            )
            changed = await store.lock(conn, payment.order_id)
            assert changed is not None
            await self._tell(conn, staged, changed, now)
            await staged.write(conn)
        await staged.deliver()
        self._metrics.orders.labels(after.value).inc()

    async def expire_listings(self, job: Job[Tick]) -> int:
        """The ``listings.expire`` job: listings whose period ended leave the active
        ones (search and booking already stopped at the end), and their providers are
        told, with a push. How many expired."""
        total = 0
        while True:
            expired = await self.expire_due()
            total += expired
            if expired < _EXPIRE_BATCH:
                return total

    async def expire_due(self) -> int:
        """One batch; how many listings expired."""
        now = self._clock.now()
        staged = self._outbox.stage()
        async with self._db.transaction() as conn:
            expired = await store.expire_listings(conn, now, _EXPIRE_BATCH)
            for listing in expired:
                values = {
                    "service": listing.service_name,
                    "date": listing.ended_at.astimezone(self._zone).strftime("%d %b %Y"),
                    "price": rupees(listing.price_paise) if listing.price_paise else None,
                }
                row = await new_notification(
                    conn, listing.provider_id, NotificationType.SERVICE_EXPIRED, values, now=now
                )
                stage_notification(staged, row, push_after=PUSH_AFTER, now=now)
            await staged.write(conn)
        await staged.deliver()
        if expired:
            log.info("listings expired", extra={"listings": len(expired)})
        return len(expired)

    async def renew_free(self, caller: Caller, params: RenewListing) -> ListingPeriod:
        """Renew a free listing (labour) that lapsed or ends within 30 days, for another
        year: no payment, no new registration."""
        user_id = caller.require_user()
        now = self._clock.now()
        async with self._db.transaction() as conn:
            listing = await store.lock_listing(conn, params.provider_service_id)
            if listing is None or listing.provider_id != user_id or listing.status == "removed":
                raise NotFound("no such listing of yours", field="providerServiceId")
            if listing.is_paid:
                raise Unprocessable(
                    "this listing is paid: pay for it with payments.initiate",
                    reason="paid_listing",
                )
            current = listing.active_until if listing.status == "active" else None
            if current is not None and current > now + FREE_RENEWAL_WINDOW:
                raise Conflict(
                    "a free listing can be renewed in its last 30 days or once it lapsed",
                    reason="not_due",
                    activeUntil=current.isoformat(),
                )
            until = rules.extension(now, current) + FREE_LISTING
            await store.set_listing(conn, listing.id, "active", until, now)
        return ListingPeriod(provider_service_id=listing.id, status="active", active_until=until)


def refund_id_of(order_id: str) -> str:
    """One refund per order, in full: its id follows from the order's (a retry of the
    refund reuses it, and the gateway answers "raised already")."""
    return ("RF" + order_id)[:50]


def _observed(answer: GatewayStatus, source: str) -> dict[str, Any]:
    o = answer.observed
    return {
        "source": source,
        "outcome": o.outcome,
        "orderId": o.order_id,
        "amountPaise": o.amount_paise,
        "currency": o.currency,
        "mid": o.merchant_id,
        "code": answer.code,
        "message": answer.message,
    }


def view(row: PaymentRow) -> Payment:
    return Payment(
        order_id=row.order_id,
        product=WIRE_PRODUCT[row.product],
        provider_service_id=row.provider_service_id,
        amount_paise=row.amount_paise,
        currency=row.currency,
        status=row.status,
        period_start=row.period_starts_at,
        period_end=row.period_ended_at or row.period_ends_at,
        created_at=row.created_at,
        paid_at=row.paid_at,
        refunded_at=row.refunded_at,
    )


def admin_view(row: PaymentRow) -> AdminPayment:
    return AdminPayment(
        **view(row).model_dump(),
        user_id=row.user_id,
        gateway=row.gateway,
        merchant_id=row.merchant_id,
        gateway_txn_id=row.gateway_txn_id,
        bank_txn_id=row.bank_txn_id,
        payment_mode=row.payment_mode,
        result_code=row.result_code,
        result_message=row.result_message,
        checks=row.checks,
        refund_reason=row.refund_reason,
    )
