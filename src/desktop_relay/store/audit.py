"""The audit trail in SQLite: append-only lines of who did what to which target, from where.

Nothing here changes a line once written; the only deletion is retention (purge_audit).
"""

from __future__ import annotations

import sqlite3
from typing import Any

import attr
from twisted.internet.defer import Deferred

from .connection import SQLiteConnection, execute


@attr.s(frozen=True, auto_attribs=True)
class AuditFilter:
    """Which audit lines to read: each field set narrows the trail (all of them at once)."""

    actor: str | None = None
    target: str | None = None
    action: str | None = None
    since: float | None = None  # at >= since
    until: float | None = None  # at < until
    before_id: int | None = None  # the cursor: lines older than this one

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition and its parameters."""
        clauses, params = [], []
        for column in ("actor", "target", "action"):
            value = getattr(self, column)
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if self.since is not None:
            clauses.append("at >= ?")
            params.append(self.since)
        if self.until is not None:
            clauses.append("at < ?")
            params.append(self.until)
        if self.before_id is not None:
            clauses.append("id < ?")
            params.append(self.before_id)
        return (" AND ".join(clauses) or "1", params)


class AuditQueries(SQLiteConnection):
    """The audit table."""

    def audit(
        self, at: float, actor: str, action: str, target: str, detail: str = "", address: str = ""
    ) -> Deferred[None]:
        """Append one line to the audit trail."""
        return self._run(
            lambda c: execute(
                c,
                "INSERT INTO audit (at, actor, action, target, detail, address) VALUES (?, ?, ?, ?, ?, ?)",
                (at, actor, action, target, detail, address),
            )
        )

    def audit_trail(self, limit: int = 100, where: AuditFilter = AuditFilter()) -> Deferred[list[dict[str, Any]]]:
        """Up to `limit` audit lines matching `where`, newest (last written) first."""
        return self._run(lambda c: _select(c, where, limit))

    def purge_audit(self, before: float) -> Deferred[int]:
        """Delete the lines written before `before` (retention); returns how many."""
        return self._run(lambda c: c.execute("DELETE FROM audit WHERE at < ?", (before,)).rowcount)


def _select(c: sqlite3.Connection, where: AuditFilter, limit: int) -> list[dict[str, Any]]:
    condition, params = where.where()
    rows = c.execute(f"SELECT * FROM audit WHERE {condition} ORDER BY id DESC LIMIT ?", (*params, limit))
    return [dict(row) for row in rows]
