-- Uploaded images (api/uploads): profile pictures, providers' working proofs and
-- engineering certificate, report evidence. The files live in the object store
-- (kernel/objects.py) under keys the server chose; a row says what is there.
--
-- pending: an upload URL was issued (received_at: the one request that may use it
-- came); ready: processed and stored, not attached yet (expires_at: then pruned);
-- attached: in use by the owner's profile, provider profile or a report; deleted:
-- replaced, removed or its account erased, its objects being deleted (pruned).

CREATE TABLE uploads (
    id             uuid PRIMARY KEY,
    -- NULL once the account is erased: the prune deletes what is left of it.
    owner_id       bigint REFERENCES users (id) ON DELETE SET NULL,
    purpose        text NOT NULL CHECK (purpose IN
                       ('profilePicture', 'workingProof', 'certificate', 'reportEvidence')),
    state          text NOT NULL DEFAULT 'pending'
                       CHECK (state IN ('pending', 'ready', 'attached', 'deleted')),
    -- The report an evidence image was attached to.
    report_id      bigint REFERENCES reports (id) ON DELETE SET NULL,
    image_key      text,
    thumb_key      text,
    content_type   text,
    bytes          bigint NOT NULL DEFAULT 0 CHECK (bytes >= 0),
    width          integer,
    height         integer,
    sha256         text,
    thumb_bytes    bigint NOT NULL DEFAULT 0 CHECK (thumb_bytes >= 0),
    thumb_width    integer,
    thumb_height   integer,
    thumb_sha256   text,
    created_at     timestamptz NOT NULL,
    received_at    timestamptz,
    expires_at     timestamptz,
    attached_at    timestamptz,
    -- The order of a provider's working proofs or a report's evidence, as given.
    position       smallint NOT NULL DEFAULT 0,
    CHECK (state IN ('pending', 'deleted') OR image_key IS NOT NULL),
    CHECK ((state = 'attached') = (attached_at IS NOT NULL) OR state = 'deleted')
);
-- A user's uploads of one purpose and state (attached pictures and proofs, the quota).
CREATE INDEX uploads_owner_idx ON uploads (owner_id, purpose, state);
-- One profile picture and one certificate attached per account.
CREATE UNIQUE INDEX uploads_one_attached_key ON uploads (owner_id, purpose)
    WHERE state = 'attached' AND purpose IN ('profilePicture', 'certificate');
-- admin.reports.list: the evidence of a page of reports.
CREATE INDEX uploads_report_idx ON uploads (report_id) WHERE report_id IS NOT NULL;
-- The prune: unattached uploads past their time, and what is deleted or ownerless.
CREATE INDEX uploads_expiry_idx ON uploads (expires_at) WHERE state IN ('pending', 'ready');
CREATE INDEX uploads_gone_idx ON uploads (created_at)
    WHERE state = 'deleted' OR owner_id IS NULL;

-- uploads.create calls, for the per-user hourly rate (a refused file leaves no upload
-- row, but its grant still counts). Pruned after a day.
CREATE TABLE upload_grants (
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    granted_at  timestamptz NOT NULL
);
CREATE INDEX upload_grants_user_idx ON upload_grants (user_id, granted_at);
CREATE INDEX upload_grants_time_idx ON upload_grants (granted_at);
