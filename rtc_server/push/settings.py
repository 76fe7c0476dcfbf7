"""The ``[push]`` settings section: the token registry, when to push, providers."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kernel.settings import Section


class PushSettings(Section):
    """Push delivery (rtc_server/push): the token registry, when to push, providers."""

    # Devices kept per user (the oldest registration is dropped beyond).
    max_devices: int = Field(10, ge=1, le=100)
    # Who delivers to iOS devices: "apns" directly, or "fcm" (the app uses the FCM SDK).
    ios_provider: Literal["apns", "fcm"] = "apns"
    # Seconds an event with a push policy may stay unacknowledged by a user who has a
    # live socket before it is pushed (users without one are pushed at once), unless
    # the event's policy says otherwise.
    ack_timeout: float = Field(10.0, ge=0)
    # Seconds between sweeps of push_intents (events the domain marked for a push,
    # booking offers): each is handed to push delivery at the next sweep.
    intent_sweep_interval: float = Field(1.0, ge=0.1)
    # Days delivery records and push logs are kept.
    retention_days: float = Field(30.0, gt=0)
    # Timeout of each request to a provider, seconds.
    request_timeout: float = Field(10.0, gt=0)
    # Web Push: subscription endpoints must be on one of these hosts (a suffix match:
    # "push.services.mozilla.com" allows "updates.push.services.mozilla.com") and use
    # https; anything else is refused at registration (the server would POST to it).
    webpush_hosts: tuple[str, ...] = (
        "fcm.googleapis.com",
        "push.services.mozilla.com",
        "notify.windows.com",
        "push.apple.com",
    )
    webpush_require_https: bool = True
    # FCM HTTP v1: the Firebase service account's key file (JSON). Empty: no FCM.
    fcm_credentials_file: str = ""
    fcm_endpoint: str = "https://fcm.googleapis.com"
    # The OAuth 2.0 token endpoint; empty: the key file's token_uri.
    fcm_token_uri: str = ""
    # Web Push (VAPID, RFC 8292): the server's EC P-256 private key (PEM). Empty: no
    # Web Push. Browsers subscribe with its public key (method push.webPushKey).
    vapid_private_key_file: str = ""
    # The operator's contact sent with every Web Push (mailto: or https: URL).
    vapid_subject: str = "mailto:ops@buildxpert.invalid"
    # APNs with token authentication: the .p8 key, its key id, the team id, and the
    # app's bundle id (apns-topic). Empty key file: no APNs.
    apns_key_file: str = ""
    apns_key_id: str = ""
    apns_team_id: str = ""
    apns_topic: str = ""
    # https://api.sandbox.push.apple.com for development builds of the app.
    apns_endpoint: str = "https://api.push.apple.com"
