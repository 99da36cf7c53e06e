-- Version 1: desktop sessions, web sign-in sessions, and the audit trail.
CREATE TABLE desktop_sessions (
    id            TEXT PRIMARY KEY,          -- random, >= 128 bits, in URLs
    owner         TEXT NOT NULL,             -- the user's stable id
    desktop       TEXT NOT NULL,             -- [desktop:NAME] from relay.ini
    state         TEXT NOT NULL CHECK (state IN ('starting', 'ready', 'stopping', 'stopped', 'failed')),
    reason        TEXT,                      -- why it failed or stopped, for the user
    container_id  TEXT,
    host_port     INTEGER,
    vnc_password  TEXT NOT NULL,             -- the container's Basic-auth password; never sent to browsers
    created       REAL NOT NULL,
    updated       REAL NOT NULL
);
CREATE INDEX desktop_sessions_owner ON desktop_sessions (owner, state);
CREATE INDEX desktop_sessions_state ON desktop_sessions (state);

CREATE TABLE web_sessions (
    token_hash    TEXT PRIMARY KEY,          -- sha256 of the cookie value; the value itself is not kept
    user_id       TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    groups_json   TEXT NOT NULL,
    created       REAL NOT NULL,
    last_seen     REAL NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);

CREATE TABLE audit (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            REAL NOT NULL,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    target        TEXT NOT NULL,
    detail        TEXT NOT NULL DEFAULT ''
);
