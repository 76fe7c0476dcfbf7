-- Login codes without lockouts (api/auth/otp.py). Nothing locks a phone any more: a
-- code dies after its wrong guesses, and wrong guesses are counted per phone and per
-- client address in otp_guesses. A code remembers the address that asked for it (past
-- the phone's guess budget, only that address may still try it). Sends are also
-- counted per number prefix (toll fraud pumps one premium range).
ALTER TABLE otp_challenges DROP COLUMN locked_until;
ALTER TABLE otp_challenges ADD COLUMN sent_to_ip text;

ALTER TABLE otp_sends ADD COLUMN prefix text;
CREATE INDEX otp_sends_prefix_sent_at_idx ON otp_sends (prefix, sent_at);

CREATE TABLE otp_guesses (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    phone       text NOT NULL,
    role        text NOT NULL,
    ip          text,
    guessed_at  timestamptz NOT NULL
);
CREATE INDEX otp_guesses_phone_idx ON otp_guesses (phone, role, guessed_at);
CREATE INDEX otp_guesses_ip_idx ON otp_guesses (ip, guessed_at);
