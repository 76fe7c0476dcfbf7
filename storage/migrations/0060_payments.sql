-- Payments (api/payments): orders at the payment gateway, the periods they bought, and
-- what an auditor asks for: every state change, every call to the gateway, every
-- security event. Money is integer paise. A payment outlives its payer's account
-- (records kept for their legal retention): user_id is set null, never cascaded.

CREATE TABLE payments (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Our order id at the gateway: a fresh one per attempt (Paytm: at most 50 of
    -- letters, digits and @ - _ .).
    order_id             text NOT NULL UNIQUE CHECK (order_id ~ '^[A-Za-z0-9@._-]{1,50}$'),
    user_id              bigint REFERENCES users (id) ON DELETE SET NULL,
    product              text NOT NULL CHECK (product IN ('listing', 'labour_access')),
    provider_service_id  bigint REFERENCES provider_services (id) ON DELETE SET NULL,
    -- What was asked of the gateway at initiate: every answer is checked against it.
    amount_paise         bigint NOT NULL CHECK (amount_paise > 0),
    currency             char(3) NOT NULL,
    gateway              text NOT NULL,
    merchant_id          text NOT NULL,
    status               text NOT NULL CHECK (status IN
                             ('created', 'pending', 'paid', 'failed', 'expired', 'review',
                              'refund_pending', 'refunded')),
    gateway_txn_id       text,
    bank_txn_id          text,
    payment_mode         text,
    result_code          text,
    result_message       text,
    -- The reconciler: when to ask the gateway next, and how often it has.
    next_check_at        timestamptz,
    checks               integer NOT NULL DEFAULT 0,
    refund_id            text UNIQUE,
    refund_reason        text,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    paid_at              timestamptz,
    refunded_at          timestamptz
);
-- payments.list (the payer's, newest first).
CREATE INDEX payments_user_idx ON payments (user_id, id DESC);
-- The reconciler's queue: orders not final, by when they are due a status check.
CREATE INDEX payments_due_idx ON payments (next_check_at)
    WHERE status IN ('created', 'pending', 'refund_pending');
-- admin.payments.list by status; revenue in admin.stats.
CREATE INDEX payments_status_idx ON payments (status, id DESC);
CREATE INDEX payments_listing_idx ON payments (provider_service_id)
    WHERE provider_service_id IS NOT NULL;

-- The period a payment bought: one per payment (a fulfilment that runs twice finds it).
-- A refund ends it early (ended_at).
CREATE TABLE paid_periods (
    payment_id           bigint PRIMARY KEY REFERENCES payments (id),
    product              text NOT NULL,
    user_id              bigint REFERENCES users (id) ON DELETE SET NULL,
    provider_service_id  bigint REFERENCES provider_services (id) ON DELETE SET NULL,
    starts_at            timestamptz NOT NULL,
    ends_at              timestamptz,  -- null: no end (a lifetime listing)
    ended_at             timestamptz
);
CREATE INDEX paid_periods_listing_idx ON paid_periods (provider_service_id, ends_at)
    WHERE provider_service_id IS NOT NULL;
CREATE INDEX paid_periods_user_idx ON paid_periods (user_id, ends_at) WHERE product = 'labour_access';

-- Customers' access to labour listings: until when (extended by each payment).
CREATE TABLE labour_access (
    user_id       bigint PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    active_until  timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

-- Every state change of a payment, and what caused it.
CREATE TABLE payment_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payment_id   bigint NOT NULL REFERENCES payments (id),
    from_status  text,
    to_status    text NOT NULL,
    source       text NOT NULL,  -- initiate, callback, webhook, verify, reconcile, refund, expiry
    detail       jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL
);
CREATE INDEX payment_events_payment_idx ON payment_events (payment_id, id);

-- Every call to the gateway: endpoint, HTTP status, latency, bodies with secrets redacted.
CREATE TABLE gateway_calls (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id     text NOT NULL,
    endpoint     text NOT NULL,
    http_status  integer,
    latency_ms   double precision NOT NULL,
    request      jsonb NOT NULL,
    response     jsonb,
    error        text,
    created_at   timestamptz NOT NULL
);
CREATE INDEX gateway_calls_order_idx ON gateway_calls (order_id, id);
CREATE INDEX gateway_calls_created_brin ON gateway_calls USING brin (created_at);

-- Bad checksums, amounts or merchants that do not match, unknown orders.
CREATE TABLE payment_security_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        text NOT NULL,
    order_id    text,
    payment_id  bigint REFERENCES payments (id),
    source_ip   text,
    detail      jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL
);
CREATE INDEX payment_security_events_created_idx ON payment_security_events (created_at DESC);
CREATE INDEX payment_security_events_order_idx ON payment_security_events (order_id)
    WHERE order_id IS NOT NULL;

-- Listings of these services can be booked and called by customers with labour access
-- only (bought: labour_access above). The original enforced it in its app alone.
ALTER TABLE services ADD COLUMN requires_labour_access boolean NOT NULL DEFAULT false;
UPDATE services SET requires_labour_access = true WHERE slug = 'labors';
