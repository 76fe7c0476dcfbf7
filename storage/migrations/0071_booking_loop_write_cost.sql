-- The booking loop's write cost (issue 21). A booking's status change is never a HOT
-- update (status is indexed), so every index of bookings gets an entry on the create
-- and on every change, and every index is opened and locked by each statement that
-- writes the table. Measured with pg_stat_user_indexes over a bench.bookings run and
-- EXPLAIN of every query that reads bookings (bench/README.md, bookings):
--
-- * bookings_customer_status_idx (customer_id, status, id): no query used it. A
--   customer's list by status and the erasure of an account's open bookings read
--   bookings_customer_idx (customer_id, id) and filter the status: a customer's
--   bookings are few (at most 8 a minute, 20 an hour are created).
-- * bookings_customer_created_idx (customer_id, created_at): only the creation limits
--   read it (the customer's bookings of the last hour), and bookings_customer_idx
--   serves that count over the same few rows.
--
-- The provider's indexes stay: a provider's bookings are many, and the list by status,
-- the badge, the earnings and the reminders each read their own.
DROP INDEX bookings_customer_status_idx;
DROP INDEX bookings_customer_created_idx;

-- Idempotency keys: two per loop (the create's and the accept's). created_at only
-- serves age pruning of rows written in time order, where a BRIN index costs almost
-- nothing to maintain and still finds the old rows (as user_events_created_at_brin).
DROP INDEX idempotency_keys_created_at_idx;
CREATE INDEX idempotency_keys_created_at_brin ON idempotency_keys USING brin (created_at);

-- Push intents: written with their events (two per loop), each with a foreign-key check
-- on users. Every intent belongs to an event of its user in the same statement, whose
-- event cursor (user_event_cursors, with its own foreign key to users, locked by that
-- statement) keeps the user from being deleted under it; the trigger that removes a
-- deleted user's events removes their intents too, as the cascade did.
ALTER TABLE push_intents DROP CONSTRAINT push_intents_user_id_fkey;

CREATE OR REPLACE FUNCTION delete_user_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM user_events WHERE user_id = OLD.id;
    DELETE FROM push_intents WHERE user_id = OLD.id;
    RETURN OLD;
END;
$$;
