-- The server core: accounts, login state, sessions and the per-user event log.
-- Times are timestamptz; business rules that need a calendar use Asia/Kolkata.

-- Secrets shared by every instance that shares this database (JWT signing key, OTP
-- HMAC key ...). Generated once, at first start, unless configured.
CREATE TABLE server_secrets (
    name        text PRIMARY KEY,
    value       bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    phone        text NOT NULL,                     -- E.164, e.g. +919876543210
    role         text NOT NULL CHECK (role IN ('customer', 'provider', 'admin')),
    full_name    text,
    is_verified  boolean NOT NULL DEFAULT false,
    is_active    boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz,
    CONSTRAINT users_phone_role_key UNIQUE (phone, role)
);

-- One pending code per (phone, role). The code is never stored in clear: only its
-- HMAC under the server's OTP key. A lock survives the challenge it ended.
CREATE TABLE otp_challenges (
    phone         text NOT NULL,
    role          text NOT NULL,
    code_hmac     bytea,
    expires_at    timestamptz,
    attempts      integer NOT NULL DEFAULT 0,
    locked_until  timestamptz,
    last_sent_at  timestamptz,
    PRIMARY KEY (phone, role)
);

-- Every code sent, for the send caps per phone and per client address.
CREATE TABLE otp_sends (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    phone    text NOT NULL,
    ip       text,
    sent_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX otp_sends_phone_sent_at_idx ON otp_sends (phone, sent_at);
CREATE INDEX otp_sends_ip_sent_at_idx ON otp_sends (ip, sent_at);

-- A login on one device: the family of every refresh token rotated from its first.
CREATE TABLE auth_sessions (
    id            uuid PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device        jsonb NOT NULL DEFAULT '{}'::jsonb,
    ip            text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    revoked_at    timestamptz,
    revoke_reason text
);
CREATE INDEX auth_sessions_user_id_idx ON auth_sessions (user_id) WHERE revoked_at IS NULL;
CREATE INDEX auth_sessions_expires_at_idx ON auth_sessions (expires_at);

-- Refresh tokens, stored as sha256. A token is used once: its rotation sets used_at;
-- presenting it again revokes the whole session (RFC 6819 5.2.2.3; OAuth 2.0 Security
-- BCP, refresh token rotation).
CREATE TABLE refresh_tokens (
    token_hash  bytea PRIMARY KEY,
    session_id  uuid NOT NULL REFERENCES auth_sessions (id) ON DELETE CASCADE,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);
CREATE INDEX refresh_tokens_expires_at_idx ON refresh_tokens (expires_at);

-- Per-user event sequence: last_seq is the seq of the newest event, acked_seq the
-- highest seq any of the user's devices acknowledged (cumulative).
CREATE TABLE user_event_cursors (
    user_id    bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    last_seq   bigint NOT NULL DEFAULT 0,
    acked_seq  bigint NOT NULL DEFAULT 0
);

-- The durable per-user event log, bounded by age and count (pruned by a job). The
-- payload is kept as the JSON text that goes on the wire, so replay re-encodes nothing.
CREATE TABLE user_events (
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    seq         bigint NOT NULL,
    event       text NOT NULL,
    payload     json NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, seq)
);
CREATE INDEX user_events_created_at_idx ON user_events (created_at);
