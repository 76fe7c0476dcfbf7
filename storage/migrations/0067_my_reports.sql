-- reports.mine: a reporter's own reports, newest first (keyset on id).
CREATE INDEX reports_reporter_idx ON reports (reporter_id, id);
-- admin.reports.list by the reporting side, with or without a status.
CREATE INDEX reports_side_idx ON reports (reporter_side, id);
CREATE INDEX reports_side_status_idx ON reports (reporter_side, status, id);
