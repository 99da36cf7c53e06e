"""The relay's SQLite store: desktop sessions and their queue, web sign-in sessions, the audit trail.

One connection, used from one dedicated thread, so the reactor never waits on disk and
writes are serialised. The schema is versioned by `PRAGMA user_version` and upgraded from
the numbered files in schema/ on open.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any, TypeVar

import attr
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from .capacity import CapacityLimits, Claim, DoesNotFit, QueueFull, SessionLimitReached, choose_starts

T = TypeVar("T")

QUEUED, STARTING, READY, STOPPING, STOPPED, FAILED = (
    "queued", "starting", "ready", "stopping", "stopped", "failed"
)
# States that hold (or are getting or losing) a container, and so count against capacity.
HOLDING_STATES = (STARTING, READY, STOPPING)
# States a session can still end from: the active ones.
ACTIVE_STATES = (QUEUED, *HOLDING_STATES)


@attr.s(frozen=True, auto_attribs=True)
class DesktopSession:
    """One desktop session: a user's container for one desktop type, from start to stop."""

    id: str
    owner: str
    desktop: str
    state: str
    reason: str | None
    container_id: str | None
    host_port: int | None
    vnc_password: str = attr.ib(repr=False)
    created: float
    updated: float
    end_reason: str | None = None
    memory: int = 0
    ready_at: float | None = None
    last_input: float | None = None
    last_connected: float | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


@attr.s(frozen=True, auto_attribs=True)
class WebSession:
    """A signed-in browser: who it is, and when it signed in and was last seen."""

    token_hash: str
    user_id: str
    display_name: str
    groups: frozenset[str]
    created: float
    last_seen: float
    role: str = "pupil"


class StoreError(Exception):
    """The database could not be opened or upgraded."""


def _schema_versions() -> list[tuple[int, str]]:
    scripts = []
    for entry in files("desktop_relay").joinpath("schema").iterdir():
        if entry.name.endswith(".sql"):
            scripts.append((int(entry.name.split("-", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(scripts)


class SQLiteStore:
    """Asynchronous access to the SQLite database; every method returns a Deferred."""

    def __init__(self, path: Path, reactor: IReactorFromThreads) -> None:
        self._path = path
        self._reactor = reactor
        # One thread owns the connection: SQLite connections are not shared across threads,
        # and one writer at a time is what SQLite wants anyway.
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name="desktop-relay-store")
        self._connection: sqlite3.Connection | None = None

    def open(self) -> Deferred[None]:
        """Start the store's thread, open the file and bring the schema up to date."""
        self._pool.start()
        d = self._run(lambda c: None, connect=True)
        d.addErrback(self._stop_thread)
        return d

    def close(self) -> Deferred[None]:
        """Close the connection and stop the thread."""

        def close() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        d = deferToThreadPool(self._reactor, self._pool, close)
        d.addBoth(self._stop_thread)
        return d

    def _stop_thread(self, result: T) -> T:
        self._pool.stop()
        return result

    def _run(self, work: Callable[[sqlite3.Connection], T], connect: bool = False) -> Deferred[T]:
        def in_thread() -> T:
            if self._connection is None:
                if not connect:
                    raise StoreError("the store is closed")
                self._connection = self._connect()
            connection = self._connection
            connection.execute("BEGIN IMMEDIATE")  # one transaction per call: all or nothing
            try:
                result = work(connection)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            return result

        return deferToThreadPool(self._reactor, self._pool, in_thread)

    def _connect(self) -> sqlite3.Connection:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        try:
            connection = sqlite3.connect(str(self._path), isolation_level=None, check_same_thread=False)
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA foreign_keys=ON")
            self._path.chmod(0o600)  # it holds container passwords
            self._migrate(connection)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open database {self._path}: {e}") from e
        return connection

    @staticmethod
    def _migrate(connection: sqlite3.Connection) -> None:
        current = connection.execute("PRAGMA user_version").fetchone()[0]
        versions = _schema_versions()
        newest = versions[-1][0]
        if current > newest:
            raise StoreError(f"database schema version {current} is newer than this relay knows ({newest})")
        for version, script in versions:
            if version > current:
                try:
                    connection.executescript(f"BEGIN; {script}; PRAGMA user_version = {version}; COMMIT;")
                except BaseException:
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                    raise

    # Desktop sessions

    def add_session(self, session: DesktopSession) -> Deferred[None]:
        """Insert a new desktop session."""
        return self._run(lambda c: _insert(c, session))

    def admit(
        self, session: DesktopSession, limits: CapacityLimits, max_per_user: int, can_start: bool
    ) -> Deferred[tuple[DesktopSession, bool, list[DesktopSession]]]:
        """Take a start into the queue and start what fits, in one transaction.

        Returns (session, created, started): the user's active session of the same desktop
        instead of a new one (created False), else the new session (queued, or starting if
        it fits now), and every session this moved from queued to starting, the new one
        included. Raises SessionLimitReached, DoesNotFit or QueueFull, writing nothing.
        `can_start` False (the engine is away) queues without starting anything. A new session's
        "start" audit line is written in the same transaction.
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
            started = _promote(c, limits, session.created) if can_start else []
            if all(s.id != session.id for s in started):
                waiting = c.execute(
                    "SELECT COUNT(*) FROM desktop_sessions WHERE state = ?", (QUEUED,)
                ).fetchone()[0]
                if waiting > limits.max_queued:
                    raise QueueFull(limits.max_queued)
            admitted = _one(c, "SELECT * FROM desktop_sessions WHERE id = ?", (session.id,))
            assert admitted is not None
            _execute(
                c, "INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                (session.created, session.owner, "start", session.id, session.desktop),
            )
            return (admitted, True, started)

        return self._run(admit)

    def promote(self, limits: CapacityLimits, now: float) -> Deferred[list[DesktopSession]]:
        """Move the queued sessions that fit now to starting, in queue order; returns them."""
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
            lambda c: _execute(c, "DELETE FROM desktop_sessions WHERE id = ?", (session_id,))
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
        allowed = {"state", "reason", "end_reason", "container_id", "host_port", "ready_at", "last_connected"}
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

    # Web sessions

    def add_web_session(self, web: WebSession) -> Deferred[None]:
        """Record a new signed-in browser."""
        return self._run(
            lambda c: _execute(
                c,
                "INSERT INTO web_sessions (token_hash, user_id, display_name, groups_json, created,"
                " last_seen, role) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    web.token_hash,
                    web.user_id,
                    web.display_name,
                    json.dumps(sorted(web.groups)),
                    web.created,
                    web.last_seen,
                    web.role,
                ),
            )
        )

    def get_web_session(self, token_hash: str) -> Deferred[WebSession | None]:
        """A signed-in browser by the hash of its cookie, or None."""

        def get(c: sqlite3.Connection) -> WebSession | None:
            row = c.execute("SELECT * FROM web_sessions WHERE token_hash = ?", (token_hash,)).fetchone()
            if row is None:
                return None
            return WebSession(
                token_hash=row["token_hash"],
                user_id=row["user_id"],
                display_name=row["display_name"],
                groups=frozenset(json.loads(row["groups_json"])),
                created=row["created"],
                last_seen=row["last_seen"],
                role=row["role"],
            )

        return self._run(get)

    def touch_web_session(self, token_hash: str, now: float) -> Deferred[None]:
        """Note that a signed-in browser was seen now (for idle expiry)."""
        return self._run(
            lambda c: _execute(
                c,
                "UPDATE web_sessions SET last_seen = ? WHERE token_hash = ?", (now, token_hash)
            )
        )

    def delete_web_session(self, token_hash: str) -> Deferred[None]:
        """Sign a browser out."""
        return self._run(
            lambda c: _execute(c, "DELETE FROM web_sessions WHERE token_hash = ?", (token_hash,))
        )

    def count_web_sessions(self, user_id: str) -> Deferred[int]:
        """How many browsers a user is signed in with."""
        return self._run(
            lambda c: c.execute("SELECT COUNT(*) FROM web_sessions WHERE user_id = ?", (user_id,)).fetchone()[0]
        )

    def purge_web_sessions(self, idle_before: float, created_before: float) -> Deferred[int]:
        """Delete expired sign-ins; returns how many."""
        return self._run(
            lambda c: c.execute(
                "DELETE FROM web_sessions WHERE last_seen < ? OR created < ?",
                (idle_before, created_before),
            ).rowcount
        )

    # Audit

    def audit(self, at: float, actor: str, action: str, target: str, detail: str = "") -> Deferred[None]:
        """Append one line to the audit trail."""
        return self._run(
            lambda c: _execute(
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


def _marks(values: Iterable[Any]) -> str:
    return ",".join("?" for _ in values)


def _insert(c: sqlite3.Connection, session: DesktopSession) -> None:
    row = attr.asdict(session)
    names = ", ".join(row)
    c.execute(f"INSERT INTO desktop_sessions ({names}) VALUES ({', '.join(':' + n for n in row)})", row)


def _claim(session: DesktopSession) -> Claim:
    return Claim(session.id, session.desktop, session.memory, starting=session.state == STARTING)


def _promote(c: sqlite3.Connection, limits: CapacityLimits, now: float) -> list[DesktopSession]:
    holding = _all(c, f"SELECT * FROM desktop_sessions WHERE state IN ({_marks(HOLDING_STATES)})", HOLDING_STATES)
    queued = _all(c, "SELECT * FROM desktop_sessions WHERE state = ? ORDER BY created, rowid", (QUEUED,))
    if not queued:
        return []
    started = []
    for session_id in choose_starts(map(_claim, holding), map(_claim, queued), limits):
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


def _execute(c: sqlite3.Connection, sql: str, params: Sequence[Any] | Mapping[str, Any]) -> None:
    """Run one statement for its effect; its cursor is not wanted."""
    c.execute(sql, params)


def _one(c: sqlite3.Connection, sql: str, params: Iterable[Any]) -> DesktopSession | None:
    row = c.execute(sql, tuple(params)).fetchone()
    return None if row is None else _session(row)


def _all(c: sqlite3.Connection, sql: str, params: Iterable[Any]) -> list[DesktopSession]:
    return [_session(row) for row in c.execute(sql, tuple(params))]
