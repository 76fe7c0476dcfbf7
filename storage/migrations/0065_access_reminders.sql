-- Labour access by its end, for the reminder before it ends and the word when it has
-- (api/reminders.py, job reminders.access).
CREATE INDEX labour_access_until_idx ON labour_access (active_until);
