-- Version 9: desktops a teacher offers to one of their classes for a time (docs/teachers.md).
CREATE TABLE assignments (
    id          TEXT PRIMARY KEY,            -- random, URL-safe
    class_group TEXT NOT NULL,               -- the class (a group matching [roles] class_groups)
    desktop     TEXT NOT NULL,               -- [desktop:NAME] with teachers_may_assign = yes
    starts      REAL NOT NULL,               -- from, epoch seconds
    ends        REAL NOT NULL,               -- until, epoch seconds; ends > starts
    note        TEXT NOT NULL DEFAULT '',
    creator     TEXT NOT NULL,               -- the teacher's user id
    created     REAL NOT NULL,
    ended       REAL                         -- when a teacher ended it early; NULL otherwise
);
CREATE INDEX assignments_class ON assignments (class_group, ends);
CREATE INDEX assignments_current ON assignments (ended, ends, starts);
