"""The audit trail in SQLite: append-only lines of who did what to which target."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from .connection import SQLiteConnection, execute


class AuditQueries(SQLiteConnection):
    """The audit table."""

    def audit(self, at: float, actor: str, action: str, target: str, detail: str = "") -> Deferred[None]:
        """Append one line to the audit trail."""
        return self._run(
            lambda c: execute(
                c,
                "INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                (at, actor, action, target, detail),
            )
        )

    def audit_trail(self, limit: int = 100) -> Deferred[list[dict[str, Any]]]:
        """The newest audit lines first."""
        return self._run(
            lambda c: [
                dict(row)
                for row in c.execute("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,))
            ]
        )
