-- Where each leg starts on the call's timeline, and the mixed file (both legs in one)
-- that a background job makes after the call.
ALTER TABLE recording_legs
    ADD COLUMN offset_ms integer NOT NULL DEFAULT 0 CHECK (offset_ms >= 0);
ALTER TABLE recordings
    ADD COLUMN mixed_key text,
    ADD COLUMN mixed_bytes bigint,
    ADD COLUMN mixed_sha256 text,
    ADD COLUMN mixed_duration_ms integer;
