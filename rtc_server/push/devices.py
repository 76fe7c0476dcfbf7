"""The token registry: methods ``push.register``, ``push.unregister``, ``push.devices``,
``push.settings.get`` and ``push.settings.update``.

A user has several devices, each named by the app's own ``deviceId`` (stable per
install). Registering a device again replaces its token; a token registered by another
device or user moves to the newest registration (a shared phone changing account).
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, model_validator

from kernel.clock import Clock
from kernel.errors import InvalidParams, NotFound
from kernel.rpc.registry import Access, Caller, MethodRegistry, Params, Result
from rtc_server.push.settings import PushSettings
from storage import push as push_store
from storage.database import Database

Platform = Literal["android", "ios", "web"]
DeviceId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]
# FCM registration tokens (about 160 characters today) and APNs device tokens (64 hex
# digits today; Apple says not to rely on the length): printable, no spaces.
Token = Annotated[str, Field(min_length=8, max_length=4096, pattern=r"^[\x21-\x7e]+$")]
Base64Url = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-]+=*$")]


def _b64url(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


class SubscriptionKeys(Params):
    p256dh: Base64Url = Field(
        alias="p256dh", description="the browser's P-256 public key (65 bytes)"
    )
    auth: Base64Url = Field(description="the 16-byte authentication secret")

    @model_validator(mode="after")
    def _sizes(self) -> SubscriptionKeys:
        # RFC 8291 section 3: an uncompressed P-256 point and a 16-octet secret.
        try:
            p256dh, auth = _b64url(self.p256dh), _b64url(self.auth)
        except (binascii.Error, ValueError):
            raise ValueError("keys must be base64url") from None
        if len(p256dh) != 65 or p256dh[0] != 4:
            raise ValueError("keys.p256dh must be an uncompressed P-256 point (65 bytes)")
        if len(auth) != 16:
            raise ValueError("keys.auth must be 16 bytes")
        return self


class Subscription(Params):
    """A browser's PushSubscription (``subscription.toJSON()``)."""

    endpoint: str = Field(min_length=10, max_length=1024)
    keys: SubscriptionKeys


class Register(Params):
    platform: Platform
    device_id: DeviceId
    token: Token | None = Field(None, description="android and ios: the FCM or APNs token")
    subscription: Subscription | None = Field(None, description="web: the PushSubscription")
    app_version: str | None = Field(None, max_length=32, pattern=r"^[\x20-\x7e]+$")

    @model_validator(mode="after")
    def _token_or_subscription(self) -> Register:
        if self.platform == "web":
            if self.subscription is None or self.token is not None:
                raise ValueError("platform web takes a subscription and no token")
        elif self.token is None or self.subscription is not None:
            raise ValueError(f"platform {self.platform} takes a token and no subscription")
        return self


class DeviceRef(Params):
    device_id: DeviceId


class Device(Result):
    device_id: str
    platform: str
    provider: str = Field(description="who delivers: fcm, apns or webpush")
    app_version: str | None
    registered_at: datetime


class Devices(Result):
    devices: list[Device]


class WebPushKey(Result):
    public_key: str | None = Field(
        description="the VAPID public key (base64url) to pass as applicationServerKey to "
        "pushManager.subscribe(); null: this server sends no Web Push"
    )


class Unregistered(Result):
    ok: bool = True


class PushCategories(Result):
    bookings: bool
    calls: bool
    payments: bool
    reminders: bool
    promotional: bool


class UpdateCategories(Params):
    bookings: bool | None = None
    calls: bool | None = None
    payments: bool | None = None
    reminders: bool | None = None
    promotional: bool | None = None


def _device(d: push_store.Device) -> Device:
    return Device(
        device_id=d.device_id,
        platform=d.platform,
        provider=d.provider,
        app_version=d.app_version,
        registered_at=d.registered_at,
    )


class PushDevices:
    def __init__(
        self,
        db: Database,
        settings: PushSettings,
        clock: Clock,
        *,
        web_push_key: str | None = None,
    ) -> None:
        self._db = db
        self._settings = settings
        self._clock = clock
        self._web_push_key = web_push_key

    def register(self, registry: MethodRegistry) -> None:
        add = registry.add
        add("push.register", self.register_device, params=Register, result=Device)
        add("push.unregister", self.unregister, params=DeviceRef, result=Unregistered)
        add("push.devices", self.devices, result=Devices)
        add("push.webPushKey", self.web_push_key, result=WebPushKey, access=Access.PUBLIC)
        add("push.settings.get", self.get_settings, result=PushCategories)
        add(
            "push.settings.update",
            self.update_settings,
            params=UpdateCategories,
            result=PushCategories,
        )

    async def register_device(self, caller: Caller, params: Register) -> Device:
        """Register (or re-register) this device for pushes; replaces its old token."""
        user_id = caller.require_user()
        web_keys = None
        if params.platform == "web":
            assert params.subscription is not None
            token = self._check_endpoint(params.subscription.endpoint)
            keys = params.subscription.keys
            web_keys = {"p256dh": keys.p256dh, "auth": keys.auth}
            provider = "webpush"
        else:
            assert params.token is not None
            token = params.token
            provider = "fcm" if params.platform == "android" else self._settings.ios_provider
        stored = await push_store.register_device(
            self._db,
            push_store.Device(
                user_id=user_id,
                device_id=params.device_id,
                platform=params.platform,
                provider=provider,
                token=token,
                web_keys=web_keys,
                app_version=params.app_version,
                registered_at=self._clock.now(),
            ),
            max_devices=self._settings.max_devices,
        )
        return _device(stored)

    def _check_endpoint(self, endpoint: str) -> str:
        parts = urlsplit(endpoint)
        schemes = ("https",) if self._settings.webpush_require_https else ("https", "http")
        host = (parts.hostname or "").lower()
        allowed = any(host == h or host.endswith("." + h) for h in self._settings.webpush_hosts)
        if parts.scheme not in schemes or not allowed:
            raise InvalidParams(
                "invalid params: subscription.endpoint: not a push service this server delivers to",
                fields=[
                    {
                        "field": "subscription.endpoint",
                        "message": "must be https on a known push service",
                    }
                ],
            )
        return endpoint

    async def unregister(self, caller: Caller, params: DeviceRef) -> Unregistered:
        """Stop pushes to this device (at logout, or when the user turns them off)."""
        if not await push_store.unregister_device(
            self._db, caller.require_user(), params.device_id
        ):
            raise NotFound("no such device")
        return Unregistered()

    async def web_push_key(self, caller: Caller, params: object) -> WebPushKey:
        """The server's VAPID public key, for a browser to subscribe to Web Push."""
        return WebPushKey(public_key=self._web_push_key)

    async def devices(self, caller: Caller, params: object) -> Devices:
        """The caller's registered devices."""
        rows = await push_store.devices_of(self._db, caller.require_user())
        return Devices(devices=[_device(d) for d in rows])

    async def get_settings(self, caller: Caller, params: object) -> PushCategories:
        """Which categories of pushes the caller gets (default: all but promotional)."""
        return PushCategories(**await push_store.settings_of(self._db, caller.require_user()))

    async def update_settings(self, caller: Caller, params: UpdateCategories) -> PushCategories:
        """Turn categories on or off (omitted ones stay); returns all of them."""
        changes = params.model_dump(exclude_unset=True)
        for name, value in changes.items():
            if value is None:
                raise InvalidParams(
                    f"invalid params: {name}: cannot be null",
                    fields=[{"field": name, "message": "cannot be null"}],
                )
        updated = await push_store.update_settings(
            self._db, caller.require_user(), changes, self._clock.now()
        )
        return PushCategories(**updated)
