"""Settings: loaded and validated once, in the composition root.

Precedence, highest first: command-line flags, environment variables
(``RTC_SECTION__KEY``, and ``RTC_DATA_DIR``), the TOML file (``config.toml`` or
``--config``), the defaults. ``config.toml`` at the repository root documents every
setting with its default; ``tests/unit/test_config.py`` keeps the two in step.

The core's sections are here (:class:`CoreSettings`); each feature declares its own
(:attr:`kernel.feature.Feature.settings`, under its name), and :func:`settings_model`
gathers them into the one model the server loads (``rtc_server.features.Settings``).
Every section is a small frozen model; components receive their own section, never the
environment.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, ValidationError, create_model, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from kernel.feature import Feature
from kernel.settings import ConfigError as ConfigError
from kernel.settings import Section
from rtc_server.admission import check_origins, parse_networks
from storage.objects.model import check_key

_Section = Section
S = TypeVar("S", bound=Section)


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
    # Seconds a request may take before it is cancelled and answered 5003 (retryable,
    # reason "deadline"); methods waiting on a gateway declare longer ones. Per-method
    # overrides: method_deadlines = {"admin.stats" = 10.0}.
    request_deadline: float = Field(5.0, gt=0, le=300)
    method_deadlines: dict[str, float] = Field(default_factory=dict)
    # How often the sessions of authenticated sockets are checked against the
    # database (also at once when the bus comes back): rtc_server/session_check.py.
    session_check_interval: float = Field(60.0, ge=1)
    compression: bool = False
    # Sockets that this instance accepts at most (new ones are refused with HTTP 503).
    max_connections: int = Field(50_000, ge=1)
    # Connections the kernel queues for accept(): a reconnect storm's burst waits here
    # instead of its SYNs being dropped (retried by clients only after 1, 3, 7 s ...).
    # Capped by the kernel's net.core.somaxconn.
    listen_backlog: int = Field(4096, ge=1, le=65535)
    # "production" refuses what is only for development (the payment simulator ...).
    environment: Literal["development", "production"] = "development"
    # Addresses or networks (CIDR) of the proxies in front of this server that append
    # the address they saw to X-Forwarded-For (rtc_server/admission.py). Empty: the
    # TCP peer is the client, whatever the headers say.
    trusted_proxies: list[str] = Field(default_factory=list)
    # Browser origins ("https://admin.example.com", "http://127.0.0.1:*" for any port)
    # allowed to open a socket. Handshakes without Origin (the apps) are always allowed;
    # empty: every browser is refused (HTTP 403).
    allowed_origins: list[str] = Field(default_factory=list)
    # Sockets not yet bound to a user that one client address may hold; one more is
    # closed at once with 4029.
    max_anonymous_per_ip: int = Field(20, ge=1)

    @field_validator("method_deadlines")
    @classmethod
    def _deadlines(cls, values: dict[str, float]) -> dict[str, float]:
        for method, seconds in values.items():
            if not 0 < seconds <= 300:
                raise ValueError(f"{method}: a deadline is between 0 and 300 seconds")
        return values

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        parse_networks(values)
        return values

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, values: list[str]) -> list[str]:
        return check_origins(values)


class HttpSettings(_Section):
    """The HTTP port: health, readiness, metrics."""

    host: str = "0.0.0.0"
    port: int = Field(8766, ge=0, le=65535)
    # Bearer token /metrics asks for (Authorization: Bearer <token>): the port also
    # serves public routes (downloads, payment callbacks). Secret: set it with
    # RTC_HTTP__METRICS_TOKEN. Required in production unless host is a loopback address.
    metrics_token: str = ""


class DatabaseSettings(_Section):
    """PostgreSQL. An empty DSN starts the embedded PostgreSQL in the data folder."""

    dsn: str = ""
    pool_min: int = Field(1, ge=0)
    pool_max: int = Field(20, ge=1)
    idle_timeout: float = Field(30.0, ge=0)
    connect_timeout: float = Field(10.0, gt=0)
    command_timeout: float = Field(30.0, gt=0)
    # Seconds a request waits for a free pool connection before it is answered 5003.
    acquire_timeout: float = Field(5.0, gt=0)
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


class ObjectSettings(_Section):
    """The object store every instance shares (kernel/objects.py): recordings, uploads."""

    # "local": a folder (the embedded default; several instances share it only on a
    # shared mount). "s3": S3-compatible object storage (AWS S3, MinIO, R2 ...).
    backend: Literal["local", "s3"] = "local"
    # The local store's folder; empty: "<data_dir>/objects". With "s3", only the scratch
    # files written before an upload live here (in its .tmp/).
    dir: str = ""
    # s3: the bucket (required), and a prefix of every key ("" or ending with "/") so
    # several deployments can share one bucket.
    bucket: str = ""
    prefix: str = ""
    # s3: the service's address; empty: AWS's own for the region. MinIO:
    # "http://minio:9000"; Cloudflare R2: "https://<account id>.r2.cloudflarestorage.com".
    endpoint_url: str = ""
    # s3: the region ("auto" for R2); empty: the standard AWS chain's (AWS_REGION ...).
    region: str = ""
    # s3: credentials; empty: the standard AWS chain (AWS_ACCESS_KEY_ID and
    # AWS_SECRET_ACCESS_KEY, ~/.aws/credentials, an instance or task role). Secret: set
    # it with RTC_OBJECTS__SECRET_ACCESS_KEY.
    access_key_id: str = ""
    secret_access_key: str = ""
    # s3: "path" (bucket in the path: MinIO and most self-hosted servers), "virtual"
    # (bucket in the host name), or "auto" (botocore's choice).
    addressing_style: Literal["auto", "virtual", "path"] = "auto"

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, prefix: str) -> str:
        if not prefix:
            return prefix
        words = prefix.strip("/")
        try:
            check_key(words)
        except ValueError:
            raise ValueError(
                f"{prefix!r}: words of letters, digits and _.- separated by /"
            ) from None
        return words + "/"

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, url: str) -> str:
        if url and not url.startswith(("http://", "https://")):
            raise ValueError(f"{url!r}: must start with http:// or https:// (or be empty)")
        return url.rstrip("/")

    @model_validator(mode="after")
    def _s3_needs(self) -> ObjectSettings:
        if self.backend == "s3" and not self.bucket:
            raise ValueError('backend "s3" needs bucket (RTC_OBJECTS__BUCKET)')
        if bool(self.access_key_id) != bool(self.secret_access_key):
            raise ValueError(
                "access_key_id and secret_access_key go together (or both empty: the"
                " standard AWS credentials chain)"
            )
        return self


class LogSettings(_Section):
    format: Literal["json", "text"] = "json"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Log every request (method, user, latency). Off: only failures and slow ones.
    requests: bool = False


class CoreSettings(BaseSettings):
    """The core's sections; :func:`settings_model` adds the features' sections."""

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
    events: EventSettings = EventSettings()
    jobs: JobSettings = JobSettings()
    objects: ObjectSettings = ObjectSettings()
    log: LogSettings = LogSettings()

    def section(self, kind: type[S]) -> S:
        """The section of type ``kind`` (a feature's, by its class)."""
        for name in type(self).model_fields:
            value = getattr(self, name)
            if type(value) is kind:
                return value
        raise LookupError(f"no settings section of type {kind.__name__}")

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


def settings_model(features: Iterable[type[Feature]]) -> type[CoreSettings]:
    """The settings model of a server made of ``features``: the core's sections and
    each feature's own, under the feature's name."""
    sections: dict[str, Any] = {}
    for feature in features:
        if feature.settings is None:
            continue
        name = feature.name
        if name in CoreSettings.model_fields or name in sections:
            raise ValueError(f"settings section [{name}] declared twice")
        sections[name] = (feature.settings, feature.settings())
    return create_model("Settings", __base__=CoreSettings, **sections)


def load_settings(
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    model: type[CoreSettings] | None = None,
) -> CoreSettings:
    """Load settings from defaults, the TOML file, the environment and ``overrides``.

    ``overrides`` holds command-line values as nested dicts
    (``{"server": {"port": 9000}}``); they win over everything else. Without
    ``config_file``, ``./config.toml`` is read when it exists. ``model``: the
    product's (every feature of ``rtc_server.features``) unless given.
    """
    if model is None:
        from rtc_server.features import Settings

        model = Settings
    if config_file is None and Path("config.toml").is_file():
        config_file = Path("config.toml")
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file {config_file} does not exist")
    _toml_file["path"] = config_file
    try:
        # Init values are the highest-priority source; pydantic-settings merges nested
        # sections across sources, so {"server": {"port": 1}} keeps the other keys.
        return model(**(overrides or {}))
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
