-- Reminders (api/reminders.py): each reminder is written once, in the transaction of
-- its notification, so a job that runs a slot twice (or two slots late) tells nobody
-- twice. key: the booking id, or the customer and the local date of a morning summary.
CREATE TABLE reminders_sent (
    kind     text NOT NULL,
    key      text NOT NULL,
    sent_at  timestamptz NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX reminders_sent_at_idx ON reminders_sent (sent_at);

-- The open bookings by appointment time, for the reminder jobs' windows.
CREATE INDEX bookings_open_appointment_idx ON bookings (appointment_at)
    WHERE status IN ('pending', 'accepted');
