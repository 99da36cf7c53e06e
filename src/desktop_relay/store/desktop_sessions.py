"""Desktop sessions in SQLite: their rows, the queue, admission under the capacity limits in one
transaction (taking a warm pool container where one is ready, store/pool.py), and the idle clocks."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

import attr
from twisted.internet.defer import Deferred

from ..capacity import CapacityLimits, DoesNotFit, NoRoomNow, QueueFull, SessionLimitReached, choose_starts
from .connection import SQLiteConnection, execute
from .pool import claim_pooled, pool_holdings, session_claim
from .records import ACTIVE_STATES, HOLDING_STATES, QUEUED, STARTING, STOPPING, DesktopSession, SessionFilter


class DesktopSessionQueries(SQLiteConnection):
    """The desktop_sessions table."""

    def add_session(self, session: DesktopSession) -> Deferred[None]:
        """Insert a new desktop session."""
        return self._run(lambda c: _insert(c, session))

    def admit(
        self, session: DesktopSession, limits: CapacityLimits, max_per_user: int, can_start: bool,
        queue: bool = True,
    ) -> Deferred[tuple[DesktopSession, bool, list[DesktopSession]]]:
        """Take a start into the queue and start what fits, in one transaction.

        Returns (session, created, started): the user's active session of the same desktop
        instead of a new one (created False), else the new session (queued, or starting if
        it fits now, ready if it took a pooled container), and every session this moved out of
        the queue, the new one included. Raises SessionLimitReached, DoesNotFit or QueueFull, writing nothing.
        `can_start` False (the engine is away) queues without starting anything. A new session's
        "start" audit line is written in the same transaction. `queue` False (a lesson's
        pre-start) starts it only if it fits now, else raises NoRoomNow, writing nothing.
        """

        def admit(c: sqlite3.Connection) -> tuple[DesktopSession, bool, list[DesktopSession]]:
            mine = _all(
                c,
                f"SELECT * FROM desktop_sessions WHERE owner = ? AND state IN ({_marks(ACTIVE_STATES)})"
                " ORDER BY created",
                (session.owner, *ACTIVE_STATES),
            )
            for existing in mine:
                if existing.desktop == session.desktop and existing.state != STOPPING:
                    return (existing, False, [])
            if len(mine) >= max_per_user:
                raise SessionLimitReached(max_per_user)
            if limits.memory_budget is not None and session.memory > limits.memory_budget:
                raise DoesNotFit(session.memory, limits.memory_budget)
            _insert(c, attr.evolve(session, state=QUEUED))
            # Before the promotion's lines (a pooled container's claim): the start came first.
            execute(
                c, "INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                (session.created, session.owner, "start", session.id, session.desktop),
            )
            started = _promote(c, limits, session.created) if can_start else []
            if all(s.id != session.id for s in started):
                if not queue:
                    raise NoRoomNow(session.desktop)
                waiting = c.execute(
                    "SELECT COUNT(*) FROM desktop_sessions WHERE state = ?", (QUEUED,)
                ).fetchone()[0]
                if waiting > limits.max_queued:
                    raise QueueFull(limits.max_queued)
            admitted = _one(c, "SELECT * FROM desktop_sessions WHERE id = ?", (session.id,))
            assert admitted is not None
            return (admitted, True, started)

        return self._run(admit)

    def promote(self, limits: CapacityLimits, now: float) -> Deferred[list[DesktopSession]]:
        """Move the queued sessions that fit now to starting (or, with a pooled container, to
        ready), in queue order; returns them."""
        return self._run(lambda c: _promote(c, limits, now))

    def queue_positions(self) -> Deferred[dict[str, int]]:
        """Each queued session's place in the queue, 1 being next."""
        return self._run(
            lambda c: {
                row[0]: place
                for place, row in enumerate(
                    c.execute(
                        "SELECT id FROM desktop_sessions WHERE state = ? ORDER BY created, rowid", (QUEUED,)
                    ),
                    start=1,
                )
            }
        )

    def sessions_in(self, *states: str) -> Deferred[list[DesktopSession]]:
        """All sessions in these states, oldest first."""
        return self._run(
            lambda c: _all(
                c,
                f"SELECT * FROM desktop_sessions WHERE state IN ({_marks(states)}) ORDER BY created, rowid",
                states,
            )
        )

    def count_active(self) -> Deferred[dict[tuple[str, str], int]]:
        """How many sessions are in each active state, by (state, desktop)."""
        return self._run(
            lambda c: {
                (state, desktop): count
                for state, desktop, count in c.execute(
                    f"SELECT state, desktop, COUNT(*) FROM desktop_sessions WHERE state IN ({_marks(ACTIVE_STATES)})"
                    " GROUP BY state, desktop",
                    ACTIVE_STATES,
                )
            }
        )

    def record_activity(self, clocks: dict[str, tuple[float | None, float | None]]) -> Deferred[None]:
        """Keep sessions' last input and last connected times (only ever moved forward)."""

        def record(c: sqlite3.Connection) -> None:
            for session_id, (last_input, last_connected) in clocks.items():
                c.execute(
                    "UPDATE desktop_sessions SET"
                    " last_input = MAX(COALESCE(last_input, 0), COALESCE(?, 0)),"
                    " last_connected = MAX(COALESCE(last_connected, 0), COALESCE(?, 0))"
                    " WHERE id = ?",
                    (last_input, last_connected, session_id),
                )

        return self._run(record)

    def delete_session(self, session_id: str) -> Deferred[None]:
        """Remove a session row that never got a container (e.g. the engine was unreachable)."""
        return self._run(
            lambda c: execute(c, "DELETE FROM desktop_sessions WHERE id = ?", (session_id,))
        )

    def get_session(self, session_id: str) -> Deferred[DesktopSession | None]:
        """One session by id, or None."""
        return self._run(lambda c: _one(c, "SELECT * FROM desktop_sessions WHERE id = ?", (session_id,)))

    def sessions_of(self, owner: str) -> Deferred[list[DesktopSession]]:
        """A user's sessions, newest first."""
        return self._run(
            lambda c: _all(
                c, "SELECT * FROM desktop_sessions WHERE owner = ? ORDER BY created DESC", (owner,)
            )
        )

    def active_sessions(self) -> Deferred[list[DesktopSession]]:
        """All sessions that are queued or have, or are getting or losing, a container."""
        return self.sessions_in(*ACTIVE_STATES)

    def update_session(
        self, session_id: str, now: float, *, expect: Iterable[str] | None = None, **fields: Any
    ) -> Deferred[DesktopSession | None]:
        """Change fields of a session; with expect, only if its state is one of those.

        Returns the updated session, or None when it does not exist or was in another state:
        a compare-and-set, so two actors (a stop and a failing start) never both win.
        """
        allowed = {
            "state", "reason", "end_reason", "failure", "container_id", "host_port", "ready_at", "last_connected",
        }
        if not fields or not set(fields) <= allowed:
            raise ValueError(f"cannot update {sorted(set(fields) - allowed)}")
        assignments = ", ".join(f"{name} = :{name}" for name in fields)
        params: dict[str, Any] = dict(fields, id=session_id, updated=now)
        where = "id = :id"
        if expect is not None:
            states = list(expect)
            where += " AND state IN (" + ",".join(f":s{i}" for i in range(len(states))) + ")"
            params.update({f"s{i}": s for i, s in enumerate(states)})

        def update(c: sqlite3.Connection) -> DesktopSession | None:
            cursor = c.execute(
                f"UPDATE desktop_sessions SET {assignments}, updated = :updated WHERE {where}", params
            )
            if cursor.rowcount == 0:
                return None
            return _one(c, "SELECT * FROM desktop_sessions WHERE id = ?", (session_id,))

        return self._run(update)

    def find_sessions(
        self, wanted: SessionFilter, limit: int, after: tuple[float, str] | None = None
    ) -> Deferred[list[DesktopSession]]:
        """Sessions matching a filter, newest first, at most `limit`; `after` is the (created, id)
        of the previous page's last session."""
        conditions, params = _conditions(wanted)
        if after is not None:
            conditions.append("(created < ? OR (created = ? AND id < ?))")
            params += [after[0], after[0], after[1]]
        where = ("WHERE " + " AND ".join(conditions)) if conditions else ""
        return self._run(
            lambda c: _all(
                c, f"SELECT * FROM desktop_sessions {where} ORDER BY created DESC, id DESC LIMIT ?", [*params, limit]
            )
        )


def _conditions(wanted: SessionFilter) -> tuple[list[str], list[Any]]:
    conditions: list[str] = []
    params: list[Any] = []
    for column, value in (("owner", wanted.owner), ("desktop", wanted.desktop), ("state", wanted.state)):
        if value is not None:
            conditions.append(f"{column} = ?")
            params.append(value)
    if wanted.created_before is not None:
        conditions.append("created < ?")
        params.append(wanted.created_before)
    if wanted.created_after is not None:
        conditions.append("created > ?")
        params.append(wanted.created_after)
    if wanted.idle_since is not None:
        # A session nobody has typed in yet has been idle since it became ready.
        conditions.append("COALESCE(last_input, ready_at) < ?")
        params.append(wanted.idle_since)
    return conditions, params


def _marks(values: Iterable[Any]) -> str:
    return ",".join("?" for _ in values)


def _insert(c: sqlite3.Connection, session: DesktopSession) -> None:
    row = attr.asdict(session)
    names = ", ".join(row)
    c.execute(f"INSERT INTO desktop_sessions ({names}) VALUES ({', '.join(':' + n for n in row)})", row)


def _promote(c: sqlite3.Connection, limits: CapacityLimits, now: float) -> list[DesktopSession]:
    queued = _all(c, "SELECT * FROM desktop_sessions WHERE state = ? ORDER BY created, rowid", (QUEUED,))
    if not queued:
        return []
    # A ready pooled container is taken first: its capacity is held already.
    started = claim_pooled(c, queued, now)
    taken = {s.id for s in started}
    holding = _all(c, f"SELECT * FROM desktop_sessions WHERE state IN ({_marks(HOLDING_STATES)})", HOLDING_STATES)
    claims = [*map(session_claim, holding), *pool_holdings(c)]
    waiting = (session_claim(s) for s in queued if s.id not in taken)
    for session_id in choose_starts(claims, waiting, limits):
        c.execute(
            "UPDATE desktop_sessions SET state = ?, updated = ? WHERE id = ? AND state = ?",
            (STARTING, now, session_id, QUEUED),
        )
        promoted = _one(c, "SELECT * FROM desktop_sessions WHERE id = ?", (session_id,))
        assert promoted is not None
        started.append(promoted)
    return started


def _session(row: sqlite3.Row) -> DesktopSession:
    return DesktopSession(**{key: row[key] for key in row.keys()})


def _one(c: sqlite3.Connection, sql: str, params: Iterable[Any]) -> DesktopSession | None:
    row = c.execute(sql, tuple(params)).fetchone()
    return None if row is None else _session(row)


def _all(c: sqlite3.Connection, sql: str, params: Iterable[Any]) -> list[DesktopSession]:
    return [_session(row) for row in c.execute(sql, tuple(params))]
