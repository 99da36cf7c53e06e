-- Version 4: the admin API's bearer tokens, and the users the relay has seen sign in.
CREATE TABLE admin_tokens (
    name          TEXT PRIMARY KEY,          -- chosen by the admin; the audit's actor is token:<name>,
                                             -- so a name is never given to a second token, revoked or not
    token_hash    TEXT NOT NULL UNIQUE,      -- sha256 of the token; the token itself is shown once, never kept
    scope         TEXT NOT NULL CHECK (scope IN ('read', 'write')),
    created       REAL NOT NULL,
    revoked       REAL,                      -- when it was revoked; NULL while it works
    last_used     REAL                       -- the last call made with it (to the minute)
);

CREATE TABLE users_seen (
    user_id       TEXT PRIMARY KEY,          -- the stable id (OpenID sub, IServ uuid, local account)
    display_name  TEXT NOT NULL,
    groups_json   TEXT NOT NULL,             -- the groups at the last sign-in, a sorted JSON array
    role          TEXT NOT NULL,             -- the role at the last sign-in
    first_seen    REAL NOT NULL,
    last_sign_in  REAL NOT NULL
);
CREATE INDEX users_seen_last_sign_in ON users_seen (last_sign_in, user_id);
CREATE INDEX desktop_sessions_created ON desktop_sessions (created, id);
