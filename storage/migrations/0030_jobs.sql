-- A durable job queue (rtc_server/jobs): push delivery first, payments and scheduled
-- work next. The well-known PostgreSQL pattern: workers claim due rows with
-- FOR UPDATE SKIP LOCKED, so concurrent claimers never wait for or take the same row.
--
-- One column, run_at, says when a row may be claimed next:
--   * a new job: when it is due;
--   * a claimed job: when its lease ends (a worker that dies mid-job leaves the row
--     to be claimed again then);
--   * a failed attempt: when the retry is due (exponential backoff with jitter).
-- leased_by names the worker holding the current attempt; attempts counts the claims,
-- and a worker finishes only the attempt it claimed (a fencing token: after a lease
-- ran out and another worker claimed the job, the first one's late answer is ignored).
-- A job that succeeded is deleted; one that ran out of attempts keeps its row with
-- failed_at set, for inspection, until housekeeping prunes it.
CREATE TABLE jobs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          text NOT NULL,
    payload       jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- At most one job per key while it exists (queued, running or failed): enqueueing
    -- a key already present does nothing.
    dedup_key     text,
    run_at        timestamptz NOT NULL,
    attempts      integer NOT NULL DEFAULT 0,
    max_attempts  integer NOT NULL CHECK (max_attempts >= 1),
    leased_by     text,
    last_error    text,
    created_at    timestamptz NOT NULL,
    failed_at     timestamptz
);
CREATE UNIQUE INDEX jobs_dedup_key_key ON jobs (dedup_key);
-- What claimers scan: live rows by due time.
CREATE INDEX jobs_due_idx ON jobs (run_at) WHERE failed_at IS NULL;
CREATE INDEX jobs_failed_at_idx ON jobs (failed_at) WHERE failed_at IS NOT NULL;

-- Periodic jobs: the instance that inserts (name, slot) enqueues that tick's run; every
-- other instance's insert of the same tick conflicts and does nothing.
CREATE TABLE job_ticks (
    name  text NOT NULL,
    slot  timestamptz NOT NULL,
    PRIMARY KEY (name, slot)
);
