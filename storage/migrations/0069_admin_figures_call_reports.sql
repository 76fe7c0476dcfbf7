-- Fuller admin figures (admin.stats, admin.users.list, admin.push.history) and the
-- parties' own reports of a call (calls.report).

-- admin.stats: accounts joined per day over the last 30 days (a range of created_at).
CREATE INDEX users_created_idx ON users (created_at);

-- admin.push.history: what support needs of each push, kept on its delivery row (so
-- within push.retention_days, pruned by push.prune): what was sent (the event, the
-- notice's category, title and body), to which kind of device (as it was when the push
-- was decided: the device may be gone since), and how the provider answered (attempts,
-- the last attempt's HTTP status and provider code; status and reason as before).
-- Rows decided before this migration have these empty.
ALTER TABLE push_deliveries
    ADD COLUMN event          text,
    ADD COLUMN category       text,
    ADD COLUMN title          text,
    ADD COLUMN body           text,
    ADD COLUMN platform       text,
    ADD COLUMN provider       text,
    ADD COLUMN attempts       integer NOT NULL DEFAULT 0,
    ADD COLUMN http_status    integer,
    ADD COLUMN provider_code  text;

-- calls.report: each party's report of a call is one entry of its trail ("report"),
-- at most one per party (the service checks under the call's row lock; this holds it).
CREATE UNIQUE INDEX call_events_report_key ON call_events (call_id, actor)
    WHERE event = 'report';
