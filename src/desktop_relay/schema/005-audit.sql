-- Version 5: the audit trail's client address, and indexes for its filters (newest first).
ALTER TABLE audit ADD COLUMN address TEXT NOT NULL DEFAULT '';  -- the browser's address, if any
CREATE INDEX audit_actor ON audit (actor, id);
CREATE INDEX audit_target ON audit (target, id);
CREATE INDEX audit_action ON audit (action, id);
CREATE INDEX audit_at ON audit (at);
