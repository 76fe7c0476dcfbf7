-- Idempotency keys of mutating methods: a retry with the same key returns the first
-- result instead of acting twice. ``result`` is NULL while the first call runs.
CREATE TABLE idempotency_keys (
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key          text NOT NULL,
    method       text NOT NULL,
    params_hash  bytea NOT NULL,
    result       json,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
