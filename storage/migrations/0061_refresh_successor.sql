-- A rotated refresh token names the token it was rotated to. A retry of a refresh whose
-- answer was lost is recognised by it (the successor was never used), so the retry
-- grace covers that one token only, not every recently replaced token of the session.
ALTER TABLE refresh_tokens ADD COLUMN replaced_by bytea;
