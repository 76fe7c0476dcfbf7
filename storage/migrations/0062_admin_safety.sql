-- Admin safety. An admin's unverify sticks: logging in verifies a phone, but not an
-- account an admin unverified (verified_by_admin false). Every admin action is kept:
-- who, what, when, from where, and how it ended.
ALTER TABLE users ADD COLUMN unverified_by_admin boolean NOT NULL DEFAULT false;

CREATE TABLE admin_actions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    admin_id    bigint REFERENCES users (id) ON DELETE SET NULL,
    method      text NOT NULL,
    params      jsonb NOT NULL,
    ip          text,
    outcome     text NOT NULL,  -- "ok", or the error's name
    created_at  timestamptz NOT NULL
);
CREATE INDEX admin_actions_created_idx ON admin_actions (id DESC);
CREATE INDEX admin_actions_admin_idx ON admin_actions (admin_id, id DESC);
