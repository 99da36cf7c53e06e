-- Version 8: the warm pool's containers, and the desktops started before lessons (docs/pool.md).
CREATE TABLE pool_containers (
    id            TEXT PRIMARY KEY,          -- random like a session id; the container's session label
    desktop       TEXT NOT NULL,             -- [desktop:NAME] from relay.ini
    state         TEXT NOT NULL CHECK (state IN ('starting', 'ready')),
    fingerprint   TEXT NOT NULL,             -- the desktop's settings it was started with; a change replaces it
    container_id  TEXT,
    host_port     INTEGER,
    vnc_password  TEXT NOT NULL,             -- the container's Basic-auth password; the claiming session's
    memory        INTEGER NOT NULL DEFAULT 0, -- the desktop's memory limit in bytes, for the budget
    created       REAL NOT NULL,
    ready_at      REAL,                      -- when its desktop first answered
    session_id    TEXT UNIQUE,               -- the session that claimed it; NULL while it waits in the pool
    claimed_at    REAL
);
CREATE INDEX pool_containers_waiting ON pool_containers (desktop, session_id, state, created);

CREATE TABLE prestarts (
    schedule       TEXT NOT NULL,            -- [schedule:NAME] from relay.ini
    lesson         REAL NOT NULL,            -- the lesson's start, epoch seconds
    owner          TEXT NOT NULL,            -- the pupil the desktop was started for
    session_id     TEXT,                     -- the pre-started session; NULL when none was (outcome says why)
    outcome        TEXT NOT NULL,            -- started (waiting to be opened), opened, unclaimed, ended,
                                             -- already-running, not-allowed, limit
    at             REAL NOT NULL,            -- when the outcome was last set
    claim_deadline REAL NOT NULL,            -- lesson start + claim_window
    PRIMARY KEY (schedule, lesson, owner)
);
CREATE INDEX prestarts_outcome ON prestarts (outcome, claim_deadline);
CREATE INDEX prestarts_session ON prestarts (session_id);
