-- Bookings as live jobs, ratings, reports, in-app notifications and the push intent of
-- offers. Money is integer paise; times are timestamptz (calendar rules in Asia/Kolkata).

-- A customer's booking of a provider's registration. What was booked is snapshotted
-- (service, sub-services with their names and prices, address, names) so history
-- survives a changed price list, a deleted address or a removed account (foreign keys
-- SET NULL). Phone numbers are never stored here: calls go through the server.
CREATE TABLE bookings (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id          bigint REFERENCES users (id) ON DELETE SET NULL,
    provider_id          bigint REFERENCES users (id) ON DELETE SET NULL,
    provider_service_id  bigint REFERENCES provider_services (id) ON DELETE SET NULL,
    service_id           bigint REFERENCES services (id) ON DELETE SET NULL,
    service_slug         text NOT NULL,
    service_name         text NOT NULL,
    customer_name        text,
    provider_name        text,
    -- [{"subServiceId", "slug", "name", "pricePaise"}], as priced when booked.
    items                jsonb NOT NULL,
    charge_paise         bigint NOT NULL CHECK (charge_paise > 0),
    appointment_at       timestamptz NOT NULL,
    address_id           bigint REFERENCES addresses (id) ON DELETE SET NULL,
    -- {"type", "state", "city", "fullAddress", "pincode"}, as it was when booked.
    address              jsonb NOT NULL,
    description          text,
    status               text NOT NULL DEFAULT 'pending' CHECK (status IN
                             ('pending', 'accepted', 'rejected', 'in_progress',
                              'completed', 'cancelled')),
    rejection_reason     text,
    cancellation_reason  text,
    -- Unread badges: false when the other side changed the booking since this side
    -- last looked at it.
    viewed_by_customer   boolean NOT NULL DEFAULT true,
    viewed_by_provider   boolean NOT NULL DEFAULT false,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    completed_at         timestamptz
);
-- bookings.list as customer and as provider, by status or not, newest first (keyset).
CREATE INDEX bookings_customer_status_idx ON bookings (customer_id, status, id);
CREATE INDEX bookings_customer_idx ON bookings (customer_id, id);
CREATE INDEX bookings_provider_status_idx ON bookings (provider_id, status, id);
CREATE INDEX bookings_provider_idx ON bookings (provider_id, id);
-- The bookings of one registration by status: providers.removeService refuses while
-- some are open.
CREATE INDEX bookings_provider_service_status_idx ON bookings (provider_service_id, status);
-- The per-customer creation limits count the last hour's bookings.
CREATE INDEX bookings_customer_created_idx ON bookings (customer_id, created_at);
-- Unread badges.
CREATE INDEX bookings_unviewed_by_customer_idx ON bookings (customer_id)
    WHERE NOT viewed_by_customer;
CREATE INDEX bookings_unviewed_by_provider_idx ON bookings (provider_id)
    WHERE NOT viewed_by_provider;
-- Earnings: completed bookings by completion time.
CREATE INDEX bookings_provider_completed_idx ON bookings (provider_id, completed_at)
    WHERE status = 'completed';
-- No second open booking by one customer of one registration for the same slot
-- (reference 8.1; the original checked it in code, here the database enforces it).
CREATE UNIQUE INDEX bookings_open_slot_key
    ON bookings (customer_id, provider_service_id, appointment_at)
    WHERE status IN ('pending', 'accepted', 'in_progress');

-- A rating of the other side of a completed booking: the customer rates the provider,
-- the provider rates the customer; each once per booking.
CREATE TABLE ratings (
    booking_id   bigint NOT NULL REFERENCES bookings (id) ON DELETE CASCADE,
    rater_side   text NOT NULL CHECK (rater_side IN ('customer', 'provider')),
    rater_id     bigint REFERENCES users (id) ON DELETE SET NULL,
    ratee_id     bigint REFERENCES users (id) ON DELETE SET NULL,
    stars        smallint NOT NULL CHECK (stars BETWEEN 1 AND 5),
    review       text,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (booking_id, rater_side)
);
CREATE INDEX ratings_ratee_idx ON ratings (ratee_id, created_at);

-- The customers' ratings of each registration, kept with it so listings read them
-- without aggregating (the original never maintained its rating columns).
ALTER TABLE provider_services
    ADD COLUMN rating_count integer NOT NULL DEFAULT 0 CHECK (rating_count >= 0),
    ADD COLUMN rating_sum integer NOT NULL DEFAULT 0 CHECK (rating_sum >= 0);

-- Reports by either side of a booking about the other, once per booking and side.
CREATE TABLE reports (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    booking_id     bigint REFERENCES bookings (id) ON DELETE SET NULL,
    reporter_side  text NOT NULL CHECK (reporter_side IN ('customer', 'provider')),
    reporter_id    bigint REFERENCES users (id) ON DELETE SET NULL,
    reported_id    bigint REFERENCES users (id) ON DELETE SET NULL,
    reason         text NOT NULL,
    description    text NOT NULL,
    status         text NOT NULL DEFAULT 'open'
                       CHECK (status IN ('open', 'resolved', 'closed')),
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    CONSTRAINT reports_booking_side_key UNIQUE (booking_id, reporter_side)
);
-- admin.reports.list (by status or not, newest first) and the daily limit per reporter.
CREATE INDEX reports_status_idx ON reports (status, id);
CREATE INDEX reports_reporter_created_idx ON reports (reporter_id, created_at);

-- In-app notifications, typed (the original inferred types from titles).
CREATE TABLE notifications (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    type        text NOT NULL,
    title       text NOT NULL,
    body        text NOT NULL,
    booking_id  bigint REFERENCES bookings (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL,
    read_at     timestamptz
);
CREATE INDEX notifications_user_idx ON notifications (user_id, id);
CREATE INDEX notifications_user_type_idx ON notifications (user_id, type, id);
CREATE INDEX notifications_unread_idx ON notifications (user_id, id) WHERE read_at IS NULL;
-- Retention: pruned by age.
CREATE INDEX notifications_created_brin ON notifications USING brin (created_at);

-- Events that should reach a user by push if no device of theirs acknowledged them in
-- time: today every booking.offered. The push sender (a later part) takes the rows
-- whose due_at has passed, sends those whose seq is still above the user's acked_seq
-- (user_event_cursors), and sets sent_at (or deletes the acknowledged ones).
CREATE TABLE push_intents (
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    seq         bigint NOT NULL,
    event       text NOT NULL,
    booking_id  bigint REFERENCES bookings (id) ON DELETE CASCADE,
    due_at      timestamptz NOT NULL,
    sent_at     timestamptz,
    PRIMARY KEY (user_id, seq)
);
CREATE INDEX push_intents_due_idx ON push_intents (due_at) WHERE sent_at IS NULL;
