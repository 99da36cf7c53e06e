-- Version 6: why a start failed, as a stable code (image-missing, not-ready, ...), so the pages
-- can tell the user in their words what happened and what to do. NULL for every other session.
ALTER TABLE desktop_sessions ADD COLUMN failure TEXT;
