"""Assignments in SQLite: a desktop a teacher offers to one of their classes from a time until a
time. A row is never deleted: ending one early sets `ended`, so the audit trail and the class's
history keep it. Each change is audited in the same transaction as the row."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

import attr
from twisted.internet.defer import Deferred

from .connection import SQLiteConnection, execute


@attr.s(frozen=True, auto_attribs=True)
class Assignment:
    """A desktop offered to a class's pupils while `starts <= now < ends` (and not ended early)."""

    id: str
    class_group: str
    desktop: str
    starts: float
    ends: float
    note: str
    creator: str
    created: float
    ended: float | None = None

    def current(self, now: float) -> bool:
        """Whether the class's pupils may start the desktop now."""
        return self.ended is None and self.starts <= now < self.ends

    def until(self) -> float:
        """When it stops being offered: its end, or when it was ended early."""
        return self.ends if self.ended is None else min(self.ended, self.ends)


class AssignmentQueries(SQLiteConnection):
    """The assignments table."""

    def add_assignment(self, assignment: Assignment) -> Deferred[None]:
        """Store a new assignment, audited as assignment.create by its creator."""

        def add(c: sqlite3.Connection) -> None:
            row = attr.asdict(assignment)
            execute(c, f"INSERT INTO assignments ({', '.join(row)}) VALUES ({', '.join(':' + n for n in row)})", row)
            _audit(c, assignment.created, assignment.creator, "assignment.create", assignment,
                   f"{assignment.class_group} {assignment.desktop} {assignment.starts:.0f}-{assignment.ends:.0f}")

        return self._run(add)

    def end_assignment(self, assignment_id: str, actor: str, now: float) -> Deferred[Assignment | None]:
        """End an assignment early (audited as assignment.end); None when it had ended already
        or is not there. The row stays, with `ended` set."""

        def end(c: sqlite3.Connection) -> Assignment | None:
            changed = c.execute(
                "UPDATE assignments SET ended = ? WHERE id = ? AND ended IS NULL AND ends > ?",
                (now, assignment_id, now),
            ).rowcount
            if not changed:
                return None
            found = _one(c, "SELECT * FROM assignments WHERE id = ?", (assignment_id,))
            assert found is not None
            _audit(c, now, actor, "assignment.end", found, f"{found.class_group} {found.desktop}")
            return found

        return self._run(end)

    def assignment(self, assignment_id: str) -> Deferred[Assignment | None]:
        """One assignment by id, ended or not."""
        return self._run(lambda c: _one(c, "SELECT * FROM assignments WHERE id = ?", (assignment_id,)))

    def assignments_of(self, class_group: str, since: float) -> Deferred[list[Assignment]]:
        """A class's assignments that were still offered at `since` or later, the earliest first."""
        return self._run(lambda c: _all(
            c, "SELECT * FROM assignments WHERE class_group = ? AND COALESCE(MIN(ended, ends), ends) >= ?"
            " ORDER BY starts, id", (class_group, since)))

    def open_assignments(self, now: float) -> Deferred[list[Assignment]]:
        """The assignments that are offered now or will be (not ended, not past), the earliest first."""
        return self._run(lambda c: _all(
            c, "SELECT * FROM assignments WHERE ended IS NULL AND ends > ? ORDER BY starts, id", (now,)))

    def ended_since(self, since: float, now: float) -> Deferred[list[Assignment]]:
        """The assignments that stopped being offered between `since` and `now`."""
        return self._run(lambda c: _all(
            c, "SELECT * FROM assignments WHERE COALESCE(MIN(ended, ends), ends) BETWEEN ? AND ?"
            " ORDER BY starts, id", (since, now)))

    def groups_seen(self) -> Deferred[list[str]]:
        """Every group of any user seen (for an admin who sees all classes)."""
        return self._run(lambda c: [row[0] for row in c.execute(
            "SELECT DISTINCT json_each.value FROM users_seen, json_each(users_seen.groups_json) ORDER BY 1")])


def _audit(c: sqlite3.Connection, at: float, actor: str, action: str, assignment: Assignment, detail: str) -> None:
    execute(c, "INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
            (at, actor, action, assignment.id, detail))


def _one(c: sqlite3.Connection, sql: str, params: Iterable[Any]) -> Assignment | None:
    found = _all(c, sql, params)
    return found[0] if found else None


def _all(c: sqlite3.Connection, sql: str, params: Iterable[Any]) -> list[Assignment]:
    return [Assignment(**{key: row[key] for key in row.keys()}) for row in c.execute(sql, tuple(params))]
