-- Version 2: the role a browser signed in with (admin, teacher or pupil), from its groups.
ALTER TABLE web_sessions ADD COLUMN role TEXT NOT NULL DEFAULT 'pupil';
