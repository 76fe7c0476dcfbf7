-- Recorded calls: one recording per call whose media went through the server, and one
-- file per leg (each party's audio). Files live in a RecordingStore (local folder by
-- default) under storage_key; rows say what is there, how long, and its checksum.

CREATE TABLE recordings (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    call_id       bigint NOT NULL UNIQUE REFERENCES call_sessions (id) ON DELETE CASCADE,
    -- The instance carrying the media (where the files are written).
    instance_id   text NOT NULL,
    -- recording: media flowing; ready: both legs written; failed: a leg could not be
    -- written (disk full, I/O error, the instance died); deleted: past retention.
    state         text NOT NULL DEFAULT 'recording'
                      CHECK (state IN ('recording', 'ready', 'failed', 'deleted')),
    error         text,
    duration_ms   integer,
    started_at    timestamptz NOT NULL,
    ended_at      timestamptz,
    deleted_at    timestamptz,
    CHECK ((state = 'recording') = (ended_at IS NULL))
);
-- Retention: finished recordings by age.
CREATE INDEX recordings_ended_idx ON recordings (ended_at) WHERE state IN ('ready', 'failed');
-- Recordings still marked recording (their instance may have died).
CREATE INDEX recordings_open_idx ON recordings (started_at) WHERE state = 'recording';
-- admin.recordings.list: newest first.
CREATE INDEX recordings_id_idx ON recordings (id) WHERE state <> 'deleted';

CREATE TABLE recording_legs (
    recording_id  bigint NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    leg           text NOT NULL CHECK (leg IN ('caller', 'callee')),
    user_id       bigint REFERENCES users (id) ON DELETE SET NULL,
    storage_key   text NOT NULL,
    codec         text NOT NULL,
    bytes         bigint NOT NULL CHECK (bytes >= 0),
    duration_ms   integer NOT NULL CHECK (duration_ms >= 0),
    packets       integer NOT NULL CHECK (packets >= 0),
    lost          integer NOT NULL CHECK (lost >= 0),
    sha256        text NOT NULL,
    error         text,
    PRIMARY KEY (recording_id, leg)
);
