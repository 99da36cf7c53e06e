-- Version 7: users' home volumes (docs/homes.md). Docker holds the volumes; this table is what
-- the relay knows of them: whose, when used, and how much they held when last measured.
CREATE TABLE homes (
    volume        TEXT PRIMARY KEY,          -- the Docker volume's name, dr-<instance>-home-<key>-<hash>
    owner         TEXT NOT NULL,             -- the user's id
    key           TEXT NOT NULL,             -- which of the user's homes: the desktop family, or d-<desktop>
    created       REAL NOT NULL,
    last_used     REAL NOT NULL,             -- the last start of a desktop with it
    usage_bytes   INTEGER,                   -- NULL until first measured
    measured_at   REAL
);
CREATE UNIQUE INDEX homes_owner_key ON homes (owner, key);
