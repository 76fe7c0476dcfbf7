"""Payments as a feature: ``payments.*``, ``listings.renew``, ``admin.payments.*``, the
gateway's callback and webhook, the reconciler and the expiry of listings.

The gateway is Paytm (``payments.gateway = "paytm"``: its staging or production host,
or any URL) or, the embedded default, a local Paytm simulator served on this server's
own HTTP port under ``/simulator/paytm``: the same protocol, with a checkout page a
developer clicks through. Production refuses the simulator.
"""

from __future__ import annotations

import logging

from api.payments.callback import CALLBACK_PATH, WEBHOOK_PATH, PaymentCallbacks
from api.payments.gateway import PaytmGateway
from api.payments.metrics import PaymentMetrics
from api.payments.models import (
    PAYMENT_UPDATED,
    AdminListPayments,
    AdminPayment,
    AdminPaymentDetail,
    AdminPaymentPage,
    Checkout,
    Initiate,
    LabourAccess,
    ListingPeriod,
    ListPayments,
    OrderRef,
    Payment,
    PaymentPage,
    Refund,
    RenewListing,
)
from api.payments.paytm.simulator import PaytmSimulator
from api.payments.service import PaymentService
from api.payments.settings import PaymentSettings
from kernel.feature import Feature, Kit
from kernel.jobs import JobSpec, Tick
from kernel.rpc.registry import Access, Empty
from kernel.settings import ConfigError

log = logging.getLogger("rtc.payments")

RECONCILE = JobSpec("payments.reconcile", Tick)
EXPIRE_LISTINGS = JobSpec("listings.expire", Tick)

SIMULATOR_PREFIX = "/simulator/paytm"
SIMULATOR_MID = "BXSIMULATOR00001"

PAYERS = frozenset({"customer", "provider"})


class PaymentsFeature(Feature):
    name = "payments"
    settings = PaymentSettings

    async def install(self, kit: Kit) -> None:
        s = kit.settings(PaymentSettings)
        if s.gateway == "simulator" and kit.production:
            raise ConfigError(
                "payments.gateway is the simulator, which takes no money: in production "
                'set payments.gateway = "paytm" with paytm_mid and '
                "RTC_PAYMENTS__PAYTM_MERCHANT_KEY (docs/operations.md, Payments)"
            )
        if not s.public_url and kit.production:
            raise ConfigError(
                "payments.public_url is required in production: the https address where"
                " payers' browsers and Paytm's webhook reach the HTTP port"
            )
        self._kit = kit
        self._settings = s
        self.metrics = PaymentMetrics(kit.metrics)
        self.service = PaymentService(
            kit.db,
            kit.outbox,
            kit.clock,
            s,
            self.metrics,
            timezone=kit.timezone,
            public_url=kit.http_url,
        )
        self._methods(kit)
        callbacks = PaymentCallbacks(
            self.service, s.callback_networks, client_address=kit.client_address
        )
        kit.route("POST", CALLBACK_PATH, callbacks.callback)
        kit.route("POST", WEBHOOK_PATH, callbacks.webhook)
        kit.event(PAYMENT_UPDATED)
        kit.job(RECONCILE, self.service.reconcile)
        kit.every(s.reconcile_interval, RECONCILE)
        kit.job(EXPIRE_LISTINGS, self.service.expire_listings)
        kit.every(60.0, EXPIRE_LISTINGS)
        self.simulator: PaytmSimulator | None = None
        if s.gateway == "simulator":
            key = (await kit.secret("paytm_simulator_key")).hex()[:16]
            self.simulator = PaytmSimulator({SIMULATOR_MID: key})
            for method, path, handler in self.simulator.routes(SIMULATOR_PREFIX):
                kit.route(method, path, handler)
            self._simulator_key = key
            kit.on_start(self._connect_simulator)
        else:
            self.service.gateway = PaytmGateway(
                kit.db,
                self.metrics,
                base_url=s.paytm_url,
                mid=s.paytm_mid,
                key=s.paytm_merchant_key,
                website=s.paytm_website,
                timeout=s.request_timeout,
            )
        kit.on_stop(self._close)

    def _methods(self, kit: Kit) -> None:
        add = kit.methods.add
        service = self.service
        admin = Access.ADMIN
        # Methods that call Paytm: one call may take request_timeout, some make two.
        gateway = 2 * self._settings.request_timeout + 5
        add(
            "payments.initiate",
            service.initiate,
            params=Initiate,
            result=Checkout,
            roles=PAYERS,
            deadline=gateway,
        )
        add(
            "payments.verify",
            service.verify,
            params=OrderRef,
            result=Payment,
            roles=PAYERS,
            deadline=gateway,
        )
        add("payments.get", service.get, params=OrderRef, result=Payment, roles=PAYERS)
        add("payments.list", service.list, params=ListPayments, result=PaymentPage, roles=PAYERS)
        add(
            "payments.labourAccess",
            service.labour_access,
            params=Empty,
            result=LabourAccess,
            roles=frozenset({"customer"}),
        )
        add(
            "listings.renew",
            service.renew_free,
            params=RenewListing,
            result=ListingPeriod,
            roles=frozenset({"provider"}),
        )
        add(
            "admin.payments.list",
            service.admin_list,
            params=AdminListPayments,
            result=AdminPaymentPage,
            access=admin,
        )
        add(
            "admin.payments.get",
            service.admin_get,
            params=OrderRef,
            result=AdminPaymentDetail,
            access=admin,
        )
        add(
            "admin.payments.refund",
            service.refund,
            params=Refund,
            result=AdminPayment,
            access=admin,
            deadline=gateway,
        )

    async def _connect_simulator(self) -> None:
        """The simulator is served on this server's HTTP port: its URL is known now."""
        assert self.simulator is not None
        base = self._kit.http_url()
        self.service.gateway = PaytmGateway(
            self._kit.db,
            self.metrics,
            base_url=base + SIMULATOR_PREFIX,
            mid=SIMULATOR_MID,
            key=self._simulator_key,
            website="WEBSTAGING",
            timeout=self._settings.request_timeout,
        )
        public = self._settings.public_url or base
        self.simulator.set_webhook(SIMULATOR_MID, public + WEBHOOK_PATH)
        log.warning(
            "payments: the local Paytm simulator takes no money (payments.gateway)",
            extra={"checkout": base + SIMULATOR_PREFIX},
        )

    async def _close(self) -> None:
        if self.service.gateway is not None:
            await self.service.gateway.close()
        if self.simulator is not None:
            await self.simulator.close()
