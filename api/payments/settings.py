"""The ``[payments]`` settings section: the gateway, the products, the reconciler."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator, model_validator

from kernel.settings import Section, public_url

#: Paytm's hosts, by the names ``paytm_base_url`` accepts.
PAYTM_HOSTS = {
    "staging": "https://securegw-stage.paytm.in",
    "production": "https://securegw.paytm.in",
}


class PaymentSettings(Section):
    # "simulator": the local Paytm simulator on this server's HTTP port (development;
    # refused in production). "paytm": Paytm itself, with the merchant below.
    gateway: Literal["simulator", "paytm"] = "simulator"
    # Paytm: the merchant id, its key (set it with the environment variable
    # RTC_PAYMENTS__PAYTM_MERCHANT_KEY, never in a file), the website name Paytm gave
    # ("WEBSTAGING" on staging, usually "DEFAULT" in production) and the gateway's base
    # URL: "staging", "production", or any https URL (a proxy, a test server).
    paytm_mid: str = ""
    paytm_merchant_key: str = ""
    paytm_website: str = "WEBSTAGING"
    paytm_base_url: str = "staging"
    # Seconds one call to the gateway may take.
    request_timeout: float = Field(10.0, gt=0, le=60)
    # Where the payer's browser and the gateway's webhook reach this server's HTTP port
    # (e.g. "https://api.example.com"). Empty: http://127.0.0.1:<http port>.
    public_url: str = ""
    # Customers' access to labour listings: its price and how long it lasts.
    labour_access_price_paise: int = Field(9900, gt=0)
    labour_access_days: int = Field(7, ge=1, le=366)
    # A listing paid up to more than this many days ahead cannot be paid again yet.
    listing_horizon_days: float = Field(400.0, gt=0)
    # Orders one user may start per rolling hour.
    max_initiations_per_hour: int = Field(10, ge=1)
    # The reconciler asks the gateway about orders not final: first this many seconds
    # after the order, then backing off (doubling) up to check_backoff_max, and gives
    # up (status expired) after give_up_after seconds. Every reconcile_interval.
    check_after: float = Field(60.0, gt=0)
    check_backoff_max: float = Field(3600.0, gt=0)
    give_up_after: float = Field(3 * 86400.0, gt=0)
    reconcile_interval: float = Field(30.0, gt=0)
    # Callbacks and webhooks only from these networks (CIDR, e.g. "203.192.240.0/24").
    # Empty: from anywhere; the checksum and the status call are the guarantee.
    callback_networks: tuple[str, ...] = ()

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, url: str) -> str:
        return public_url(url)

    @field_validator("paytm_base_url")
    @classmethod
    def _base_url(cls, url: str) -> str:
        if url not in PAYTM_HOSTS and not url.startswith(("http://", "https://")):
            raise ValueError('"staging", "production" or an http(s) URL')
        return url.rstrip("/")

    @field_validator("callback_networks")
    @classmethod
    def _networks(cls, networks: tuple[str, ...]) -> tuple[str, ...]:
        for network in networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r}: not a network (CIDR)") from None
        return networks

    @model_validator(mode="after")
    def _merchant(self) -> PaymentSettings:
        if self.gateway == "paytm":
            if not self.paytm_mid:
                raise ValueError("gateway paytm needs paytm_mid")
            if len(self.paytm_merchant_key) not in (16, 24, 32):
                raise ValueError(
                    "gateway paytm needs paytm_merchant_key (16, 24 or 32 characters; "
                    "set RTC_PAYMENTS__PAYTM_MERCHANT_KEY)"
                )
        return self

    @property
    def paytm_url(self) -> str:
        return PAYTM_HOSTS.get(self.paytm_base_url, self.paytm_base_url)
