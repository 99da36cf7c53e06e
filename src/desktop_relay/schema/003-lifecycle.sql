-- Version 3: the queue, idle clocks and stop reasons.
-- 'queued' joins the states (SQLite cannot alter a CHECK constraint: the table is rebuilt,
-- rows copied in their original order so the queue keeps its order).
CREATE TABLE desktop_sessions_v3 (
    id             TEXT PRIMARY KEY,          -- random, >= 128 bits, in URLs
    owner          TEXT NOT NULL,             -- the user's stable id
    desktop        TEXT NOT NULL,             -- [desktop:NAME] from relay.ini
    state          TEXT NOT NULL CHECK (state IN ('queued', 'starting', 'ready', 'stopping', 'stopped', 'failed')),
    reason         TEXT,                      -- why it failed or stopped, in words for the user
    end_reason     TEXT,                      -- the same as a stable code: idle, lifetime, user, ...
    container_id   TEXT,
    host_port      INTEGER,
    vnc_password   TEXT NOT NULL,             -- the container's Basic-auth password; never sent to browsers
    memory         INTEGER NOT NULL DEFAULT 0, -- the desktop's memory limit in bytes, for the budget
    created        REAL NOT NULL,             -- when the start was asked for (queue order)
    updated        REAL NOT NULL,
    ready_at       REAL,                      -- when the desktop first answered
    last_input     REAL,                      -- the user's last key, pointer or clipboard input
    last_connected REAL                       -- the last moment a browser was connected
);
INSERT INTO desktop_sessions_v3 (id, owner, desktop, state, reason, container_id, host_port,
                                 vnc_password, created, updated)
    SELECT id, owner, desktop, state, reason, container_id, host_port, vnc_password, created, updated
    FROM desktop_sessions ORDER BY rowid;
DROP TABLE desktop_sessions;
ALTER TABLE desktop_sessions_v3 RENAME TO desktop_sessions;
CREATE INDEX desktop_sessions_owner ON desktop_sessions (owner, state);
CREATE INDEX desktop_sessions_state ON desktop_sessions (state, created);
