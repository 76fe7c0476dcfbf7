-- Admin: phones (and emails) that may not sign up or log in again, set when an admin
-- removes an account (admin.users.remove). Checked by auth.requestOtp/verifyOtp.
CREATE TABLE blocked_identifiers (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('phone', 'email')),
    value       text NOT NULL,                      -- phone in E.164; email lower-cased
    reason      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT blocked_identifiers_kind_value_key UNIQUE (kind, value)
);

-- admin.users.list and admin.providers.list: keyset pages by id within a role.
CREATE INDEX users_role_id_idx ON users (role, id);
