"""The providers the settings turn on."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from kernel.clock import Clock
from rtc_server.config import ConfigError
from rtc_server.push.providers.apns import ApnsKey, ApnsProvider
from rtc_server.push.providers.base import PushProvider
from rtc_server.push.providers.fcm import FcmProvider, ServiceAccount
from rtc_server.push.providers.webpush import VapidKey, WebPushProvider
from rtc_server.push.settings import PushSettings

log = logging.getLogger("rtc.push")


def providers_from(settings: PushSettings, clock: Clock) -> dict[str, PushProvider]:
    """Each configured provider by name; a device of another provider gets no pushes."""
    providers: dict[str, PushProvider] = {}
    if settings.fcm_credentials_file:
        path = Path(settings.fcm_credentials_file)
        try:
            account = ServiceAccount.from_file(path)
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(
                f"setting push.fcm_credentials_file (RTC_PUSH__FCM_CREDENTIALS_FILE): "
                f"cannot read a service-account key from {path}: {exc!r}"
            ) from exc
        if settings.fcm_token_uri:
            account = dataclasses.replace(account, token_uri=settings.fcm_token_uri)
        providers["fcm"] = FcmProvider(
            account, clock, endpoint=settings.fcm_endpoint, timeout=settings.request_timeout
        )
    if settings.vapid_private_key_file:
        path = Path(settings.vapid_private_key_file)
        try:
            vapid = VapidKey.from_pem_file(path, settings.vapid_subject)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"setting push.vapid_private_key_file (RTC_PUSH__VAPID_PRIVATE_KEY_FILE): "
                f"cannot read an EC P-256 private key from {path}: {exc!r}"
            ) from exc
        providers["webpush"] = WebPushProvider(vapid, timeout=settings.request_timeout)
    if settings.apns_key_file:
        missing = [
            name
            for name in ("apns_key_id", "apns_team_id", "apns_topic")
            if not getattr(settings, name)
        ]
        if missing:
            raise ConfigError(
                f"setting push.{missing[0]} (RTC_PUSH__{missing[0].upper()}): "
                "required with push.apns_key_file"
            )
        path = Path(settings.apns_key_file)
        try:
            key = ApnsKey.from_p8_file(path, settings.apns_key_id, settings.apns_team_id)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"setting push.apns_key_file (RTC_PUSH__APNS_KEY_FILE): "
                f"cannot read an APNs .p8 key from {path}: {exc!r}"
            ) from exc
        providers["apns"] = ApnsProvider(
            key,
            settings.apns_topic,
            endpoint=settings.apns_endpoint,
            timeout=settings.request_timeout,
        )
    log.info("push providers", extra={"providers": sorted(providers) or "none"})
    return providers
