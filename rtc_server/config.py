"""Settings: loaded and validated once, in the composition root.

Precedence, highest first: command-line flags, environment variables
(``RTC_SECTION__KEY``, and ``RTC_DATA_DIR``), the TOML file (``config.toml`` or
``--config``), the defaults below. ``config.toml`` at the repository root documents
every setting with its default; ``tests/unit/test_config.py`` keeps the two in step.

Every section is a small frozen model; components receive their own section, never the
environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ServerSettings(_Section):
    """The websocket (socket) port and the limits of each socket."""

    host: str = "0.0.0.0"
    port: int = Field(8765, ge=0, le=65535)
    path: str = "/ws"
    # Limits of one socket.
    max_frame_bytes: int = Field(65536, ge=1024)
    max_inflight: int = Field(16, ge=1)
    rate_per_second: float = Field(20.0, gt=0)
    rate_burst: int = Field(40, ge=1)
    # Frames refused by the rate limit, in a row, before the socket is closed (4029).
    abuse_limit: int = Field(50, ge=1)
    send_buffer_bytes: int = Field(1_048_576, ge=4096)
    # Timeouts, seconds.
    handshake_timeout: float = Field(10.0, gt=0)
    auth_timeout: float = Field(300.0, gt=0)
    ping_interval: float = Field(25.0, ge=0)
    ping_timeout: float = Field(20.0, gt=0)
    shutdown_grace: float = Field(10.0, ge=0)
    compression: bool = False
    # Sockets that this instance accepts at most (new ones are refused with HTTP 503).
    max_connections: int = Field(50_000, ge=1)
    # Proxies (load balancers) in front of this server that append the client's
    # address to X-Forwarded-For. 0: use the socket's peer address.
    forwarded_for_hops: int = Field(0, ge=0, le=5)


class HttpSettings(_Section):
    """The HTTP port: health, readiness, metrics."""

    host: str = "0.0.0.0"
    port: int = Field(8766, ge=0, le=65535)


class DatabaseSettings(_Section):
    """PostgreSQL. An empty DSN starts the embedded PostgreSQL in the data folder."""

    dsn: str = ""
    pool_min: int = Field(1, ge=0)
    pool_max: int = Field(20, ge=1)
    idle_timeout: float = Field(30.0, ge=0)
    connect_timeout: float = Field(10.0, gt=0)
    command_timeout: float = Field(30.0, gt=0)
    timezone: str = "Asia/Kolkata"


class RedisSettings(_Section):
    """Redis for fan-out between instances. Empty url: fan-out stays in process."""

    url: str = ""
    # Prefix of every key and channel, so several deployments can share one Redis.
    prefix: str = Field("rtc:", min_length=1, max_length=64)
    # An instance that has not renewed its lease for this long is taken as dead: its
    # presence entries are removed by the survivors. Renewed every lease / 3.
    presence_lease: float = Field(15.0, ge=1)
    # Seconds a login waits for its presence entry to reach Redis before it goes on
    # anyway (Redis slow or down: the instance catches up when Redis returns).
    watch_timeout: float = Field(2.0, gt=0)
    # Timeout of each Redis command and of connecting; a longer one counts as down.
    socket_timeout: float = Field(5.0, gt=0)
    # Connections to Redis per instance for publishing and presence (the
    # subscription has one more); a burst beyond waits for a free one.
    pool_max: int = Field(16, ge=2)
    # Events that could not be sent to other instances while Redis was unreachable,
    # kept to be sent again when it returns (the oldest beyond this are dropped:
    # clients still catch up from the log).
    retry_queue: int = Field(1000, ge=0)

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, url: str) -> str:
        if url and not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix:// (or be empty)")
        return url


class AuthSettings(_Section):
    """Login: one-time codes, access and refresh tokens."""

    # Empty: generated at first start and kept in the database, shared by every
    # instance on that database.
    jwt_secret: str = ""
    access_token_ttl: float = Field(900.0, ge=30)
    refresh_token_ttl: float = Field(30 * 86400.0, ge=60)
    default_region: str = Field("IN", min_length=2, max_length=2)
    otp_ttl: float = Field(300.0, ge=30)
    otp_max_attempts: int = Field(5, ge=1)
    otp_lock: float = Field(900.0, ge=0)
    otp_resend_cooldown: float = Field(30.0, ge=0)
    otp_max_per_phone: int = Field(5, ge=1)
    otp_phone_window: float = Field(3600.0, gt=0)
    otp_max_per_ip: int = Field(20, ge=1)
    otp_ip_window: float = Field(3600.0, gt=0)
    # "log": write each code to the log (development). Real gateways come later.
    sms_sender: Literal["log"] = "log"
    # Seconds after a refresh token was rotated during which presenting it again is
    # taken as a retry (the answer was lost on a flaky network), not as theft.
    refresh_retry_grace: float = Field(30.0, ge=0, le=300)

    @field_validator("jwt_secret")
    @classmethod
    def _long_enough(cls, secret: str) -> str:
        if secret and len(secret.encode()) < 32:
            raise ValueError("must be empty (generated) or at least 32 bytes (RFC 7518 3.2)")
        return secret


class EventSettings(_Section):
    """The per-user event log: how long and how much of it is kept for replay."""

    max_age: float = Field(7 * 86400.0, gt=0)
    max_per_user: int = Field(1000, ge=10)
    prune_interval: float = Field(300.0, gt=0)
    replay_batch: int = Field(500, ge=1)
    # A fan-out writes at most this many recipients per statement (the first chunk
    # is 50, then they double), delivering each chunk while the next are written.
    fanout_chunk: int = Field(250, ge=1)
    # A live event that arrives ahead of one still missing waits this long for it
    # before the gap is read from the log.
    gap_timeout: float = Field(0.25, gt=0)


class BookingSettings(_Section):
    """Bookings: the per-customer creation limits, how far ahead, offers' push, reports."""

    # Bookings one customer may create per rolling minute and hour (reference 8.1).
    max_per_minute: int = Field(8, ge=1)
    max_per_hour: int = Field(20, ge=1)
    # An appointment at most this many days ahead.
    max_days_ahead: int = Field(180, ge=1, le=3650)
    # Seconds an offer may stay unacknowledged by every device of the provider before
    # it is marked due for a push (push_intents).
    offer_push_after: float = Field(30.0, ge=0)
    # Seconds the notification of a booking change (accepted, rejected, started,
    # completed, cancelled) may stay unacknowledged by the side told before it is
    # pushed (at once if that side has no live socket).
    change_push_after: float = Field(30.0, ge=0)
    # Reports one user may file per rolling 24 hours.
    reports_per_day: int = Field(5, ge=1)


class CallSettings(_Section):
    """Masked calls: who may call, ringing, busy, limits, ICE and TURN (signalling/)."""

    # Booking statuses during which its customer and provider may call each other.
    booking_statuses: tuple[
        Literal["pending", "accepted", "rejected", "in_progress", "completed", "cancelled"], ...
    ] = ("pending", "accepted", "in_progress")
    # Calls one user may start per rolling minute.
    max_starts_per_minute: int = Field(5, ge=1)
    # Seconds a call rings before it ends as missed.
    ring_timeout: float = Field(30.0, gt=0)
    # Users of these roles in a call are busy for a second one (others may take several).
    busy_roles: tuple[Literal["customer", "provider"], ...] = ("customer", "provider")
    # Calls in progress started through this instance, at most.
    max_active_per_instance: int = Field(1000, ge=1)
    # Seconds a party's dropped socket has to come back (calls.resume) before the call
    # ends as disconnected.
    reconnect_grace: float = Field(20.0, ge=0)
    # Seconds between sweeps for ringing deadlines and expired graces (any instance
    # ends any call: the state is in PostgreSQL).
    sweep_interval: float = Field(0.5, gt=0)
    # Seconds between checks that each party of a call in progress still has a socket
    # on some instance (bus.online): one that has none (its instance was killed before
    # it could record the drop) starts its reconnect grace.
    presence_check_interval: float = Field(10.0, gt=0)
    # Largest SDP description relayed, in bytes.
    max_sdp_bytes: int = Field(16384, ge=1024, le=60000)
    # "auto": relay-only when TURN is configured, else open. "relay-only" needs TURN.
    policy: Literal["auto", "open", "relay-only"] = "auto"
    stun_urls: tuple[str, ...] = ()
    # TURN servers (e.g. "turn:turn.example.com:3478?transport=udp") sharing
    # turn_secret with the server (coturn: use-auth-secret, static-auth-secret).
    turn_urls: tuple[str, ...] = ()
    turn_secret: str = ""
    # Seconds TURN credentials stay valid.
    turn_ttl: float = Field(3600.0, ge=60)
    # Minutes of call events admin.calls.watch replays first (at most 1000 events).
    admin_replay_minutes: float = Field(10.0, ge=0)

    @field_validator("stun_urls", "turn_urls")
    @classmethod
    def _ice_scheme(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            if not url.startswith(("stun:", "stuns:", "turn:", "turns:")):
                raise ValueError(f"{url!r}: must start with stun:, stuns:, turn: or turns:")
        return urls

    @model_validator(mode="after")
    def _turn_complete(self) -> CallSettings:
        if self.turn_urls and len(self.turn_secret.encode()) < 16:
            raise ValueError("turn_urls need turn_secret (at least 16 bytes)")
        if self.policy == "relay-only" and not self.turn_urls:
            raise ValueError("policy relay-only needs turn_urls and turn_secret")
        return self

    @property
    def effective_policy(self) -> Literal["open", "relay-only"]:
        if self.policy == "auto":
            return "relay-only" if self.turn_urls else "open"
        return self.policy


class NotificationSettings(_Section):
    """In-app notifications."""

    # Days a notification is kept (read or not); older ones are pruned by housekeeping.
    retention_days: float = Field(90.0, gt=0)


class JobSettings(_Section):
    """The durable job queue (rtc_server/jobs): push delivery, periodic work."""

    # Jobs one instance runs at once.
    concurrency: int = Field(16, ge=1, le=1000)
    # Seconds a claimed job is leased: a handler still running then is cancelled, and
    # the job of a worker that died is claimed again after it.
    lease: float = Field(60.0, ge=1)
    # Seconds between claims when no notification wakes the worker (LISTEN/NOTIFY is
    # the fast path; this is the fallback).
    poll_interval: float = Field(1.0, gt=0)
    # Retries: attempt n waits a random time in [d/2, d], d = min(backoff_max,
    # backoff_base * 2^(n-1)) seconds.
    backoff_base: float = Field(2.0, gt=0)
    backoff_max: float = Field(3600.0, gt=0)
    max_attempts: int = Field(10, ge=1)
    # Days a job that failed for good is kept for inspection.
    failed_retention_days: float = Field(7.0, gt=0)


class PushSettings(_Section):
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


class RecordingSettings(_Section):
    """Recorded calls (recordings/): the server's media path, the files, the links."""

    # Allow calls.start {media: "recorded"}. Off: such calls are refused
    # (media_unavailable).
    enabled: bool = True
    # Recorded calls in progress whose media this instance carries, at most (then
    # "overloaded", reason recordings_full). About 40 per core (bench/recordings.py).
    max_calls_per_instance: int = Field(40, ge=1, le=10000)
    # Where the local store keeps files. Empty: "<data_dir>/recordings".
    dir: str = ""
    # Days a recording is kept; then its files are deleted and it is marked deleted.
    retention_days: float = Field(90.0, gt=0)
    # Seconds a download link (recordings.link) stays valid.
    link_ttl: float = Field(300.0, ge=10, le=86400)
    # The key that signs links (HMAC-SHA256), the same on every instance. Empty: one
    # generated and kept in the database (shared by every instance).
    link_secret: str = ""
    # Where the HTTP port is reached from outside, for links, e.g.
    # "https://media.example.com". Empty: "http://127.0.0.1:<http port>".
    public_url: str = ""
    # The parties of a call may download its recording too (admins always may), and
    # are told when it is ready (recording.ready).
    parties_may_download: bool = False
    # Tell both parties the call is recorded (recordingNotice in calls.start's answer
    # and in call.incoming), so the apps can announce it.
    notice: bool = True
    # Packets queued per leg and direction on the way to the other party before the
    # oldest are dropped (a slow peer never grows memory; the files have their own bound:
    # a leg whose writer falls about 10 s behind stops recording, "disk too slow").
    max_queue: int = Field(50, ge=4, le=10000)
    # STUN servers the server's own peer connections use to learn their public
    # address (behind NAT), e.g. ["stun:stun.example.com:3478"].
    stun_urls: tuple[str, ...] = ()

    @field_validator("stun_urls")
    @classmethod
    def _stun_scheme(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            if not url.startswith(("stun:", "stuns:")):
                raise ValueError(f"{url!r}: must start with stun: or stuns:")
        return urls

    @field_validator("public_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if url and not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r}: must start with http:// or https://")
        return url.rstrip("/")

    @field_validator("link_secret")
    @classmethod
    def _long_secret(cls, secret: str) -> str:
        if secret and len(secret.encode()) < 32:
            raise ValueError("at least 32 bytes (or empty: generated and kept in the database)")
        return secret


class LogSettings(_Section):
    format: Literal["json", "text"] = "json"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Log every request (method, user, latency). Off: only failures and slow ones.
    requests: bool = False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RTC_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    data_dir: Path = Path("data")
    server: ServerSettings = ServerSettings()
    http: HttpSettings = HttpSettings()
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    auth: AuthSettings = AuthSettings()
    events: EventSettings = EventSettings()
    bookings: BookingSettings = BookingSettings()
    notifications: NotificationSettings = NotificationSettings()
    jobs: JobSettings = JobSettings()
    push: PushSettings = PushSettings()
    calls: CallSettings = CallSettings()
    recordings: RecordingSettings = RecordingSettings()
    log: LogSettings = LogSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _toml_file.get("path")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)


# pydantic-settings builds sources from the class; the file is chosen per load.
_toml_file: dict[str, Path | None] = {}


class ConfigError(Exception):
    """A setting is invalid: the message names it."""


def load_settings(
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Load settings from defaults, the TOML file, the environment and ``overrides``.

    ``overrides`` holds command-line values as nested dicts
    (``{"server": {"port": 9000}}``); they win over everything else. Without
    ``config_file``, ``./config.toml`` is read when it exists.
    """
    if config_file is None and Path("config.toml").is_file():
        config_file = Path("config.toml")
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file {config_file} does not exist")
    _toml_file["path"] = config_file
    try:
        # Init values are the highest-priority source; pydantic-settings merges nested
        # sections across sources, so {"server": {"port": 1}} keeps the other keys.
        return Settings(**(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc
    except ValueError as exc:  # malformed TOML or env JSON
        raise ConfigError(str(exc)) from exc
    finally:
        _toml_file.pop("path", None)


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"])
        env = "RTC_" + "__".join(str(part).upper() for part in error["loc"])
        lines.append(f"setting {name} ({env}): {error['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)
