"""The classwork_due table: each class's hand-in due time, who set it, and whether the relay has
closed the class's hand-ins yet. Setting and clearing are audited in the same transaction."""

from __future__ import annotations

import sqlite3

import attr
from twisted.internet.defer import Deferred

from .connection import SQLiteConnection, execute


@attr.s(frozen=True, auto_attribs=True)
class DueTime:
    """One class's due time."""

    class_group: str
    due: float
    set_by: str
    set_at: float
    closed: bool


class ClassworkQueries(SQLiteConnection):
    """The classwork_due table."""

    def due_times(self) -> Deferred[dict[str, DueTime]]:
        """Every class's due time, by class."""
        return self._run(lambda c: {row["class_group"]: _due(row) for row in c.execute(
            "SELECT * FROM classwork_due ORDER BY class_group")})

    def set_due(self, class_group: str, due: float, actor: str, now: float, address: str = "") -> Deferred[None]:
        """Set (or move) a class's due time; its hand-ins count as open until the relay closes them."""

        def put(c: sqlite3.Connection) -> None:
            execute(c, "INSERT INTO classwork_due (class_group, due, set_by, set_at, closed) VALUES (?, ?, ?, ?, 0)"
                    " ON CONFLICT (class_group) DO UPDATE SET due = excluded.due, set_by = excluded.set_by,"
                    " set_at = excluded.set_at", (class_group, due, actor, now))
            execute(c, "INSERT INTO audit (at, actor, action, target, detail, address) VALUES (?, ?, ?, ?, ?, ?)",
                    (now, actor, "handin.due", class_group, f"due {due:.0f}", address))

        return self._run(put)

    def clear_due(self, class_group: str, actor: str, now: float, address: str = "") -> Deferred[bool]:
        """Clear a class's due time; False when it had none."""

        def clear(c: sqlite3.Connection) -> bool:
            if not c.execute("DELETE FROM classwork_due WHERE class_group = ?", (class_group,)).rowcount:
                return False
            execute(c, "INSERT INTO audit (at, actor, action, target, detail, address) VALUES (?, ?, ?, ?, ?, ?)",
                    (now, actor, "handin.due", class_group, "cleared", address))
            return True

        return self._run(clear)

    def mark_closed(self, class_group: str, due: float, closed: bool) -> Deferred[None]:
        """Record that the hand-ins of a class with this due time were closed (or opened)."""
        return self._run(lambda c: execute(
            c, "UPDATE classwork_due SET closed = ? WHERE class_group = ? AND due = ?",
            (int(closed), class_group, due)))


def _due(row: sqlite3.Row) -> DueTime:
    return DueTime(row["class_group"], row["due"], row["set_by"], row["set_at"], bool(row["closed"]))
