-- Push delivery (rtc_server/push): the devices users registered, their categories,
-- one row per (user, event, device) that makes a push happen at most once, and a log
-- of every attempt.

-- A device of a user that can be reached by push. Several per user; a device
-- re-registering replaces its token. A token belongs to one device of one user: the
-- newest registration of a token takes it from any other row.
CREATE TABLE push_devices (
    user_id        bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_id      text NOT NULL,
    platform       text NOT NULL CHECK (platform IN ('android', 'ios', 'web')),
    -- Who delivers: fcm (android, and ios when the operator routes iOS through FCM),
    -- apns (ios), webpush (web).
    provider       text NOT NULL CHECK (provider IN ('fcm', 'apns', 'webpush')),
    -- FCM registration token, APNs device token (hex), or the Web Push endpoint URL.
    token          text NOT NULL,
    -- Web Push only: the subscription's keys {"p256dh", "auth"} (RFC 8291).
    web_keys       jsonb,
    app_version    text,
    -- When this token was registered: APNs' 410 carries the time the token became
    -- invalid, and a token registered after that is kept.
    registered_at  timestamptz NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
CREATE UNIQUE INDEX push_devices_token_key ON push_devices (provider, token);

-- Which categories a user wants pushed. No row: the defaults (all but promotional).
CREATE TABLE push_settings (
    user_id      bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    bookings     boolean NOT NULL DEFAULT true,
    calls        boolean NOT NULL DEFAULT true,
    payments     boolean NOT NULL DEFAULT true,
    reminders    boolean NOT NULL DEFAULT true,
    promotional  boolean NOT NULL DEFAULT false,
    updated_at   timestamptz NOT NULL
);

-- Exactly once per (user, event, device): the push of event seq to a device is decided
-- by inserting this row (a second decision conflicts and does nothing) and sent only
-- while it is pending.
CREATE TABLE push_deliveries (
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    seq         bigint NOT NULL,
    device_id   text NOT NULL,
    status      text NOT NULL CHECK (status IN ('pending', 'sent', 'skipped', 'failed')),
    -- Why it was skipped or failed: acknowledged, device_gone, token_invalid, too_large ...
    reason      text,
    created_at  timestamptz NOT NULL,
    decided_at  timestamptz,
    PRIMARY KEY (user_id, seq, device_id)
);
CREATE INDEX push_deliveries_created_brin ON push_deliveries USING brin (created_at);

-- Every attempt to hand a push to a provider, for support and alerting.
CREATE TABLE push_logs (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id        bigint NOT NULL,
    seq            bigint NOT NULL,
    device_id      text NOT NULL,
    provider       text NOT NULL,
    -- sent; retry (throttled or provider error, tried again); token_invalid (the
    -- token was deleted); refused (not sent: too large, rejected for good); auth_error
    -- (our credentials; nothing deleted); error (network).
    outcome        text NOT NULL,
    http_status    integer,
    provider_code  text,
    latency_ms     real NOT NULL,
    at             timestamptz NOT NULL
);
CREATE INDEX push_logs_user_at_idx ON push_logs (user_id, at);
CREATE INDEX push_logs_at_brin ON push_logs USING brin (at);
