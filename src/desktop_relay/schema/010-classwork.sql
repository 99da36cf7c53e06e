-- Version 10: each class's hand-in due time (docs/teachers.md, "Hand-outs and hand-ins").
CREATE TABLE classwork_due (
    class_group  TEXT PRIMARY KEY,           -- a class group ([roles] class_groups)
    due          REAL NOT NULL,              -- epoch seconds; from then on the hand-ins are closed
    set_by       TEXT NOT NULL,              -- the teacher's (or admin's) user id
    set_at       REAL NOT NULL,
    closed       INTEGER NOT NULL DEFAULT 0  -- 1 once the relay has made the hand-ins read-only
)
