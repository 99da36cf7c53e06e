"""The warm pool's containers and the lessons' pre-started desktops in SQLite.

A pooled container is a row here from the moment its capacity is reserved; a start takes one in
the same transaction that moves the session out of the queue (claim_pooled, called by the
queue's promotion), so two users never get the same container, and the claim, being in the
database, holds across a relay restart. The row keeps the claiming session's id while that
session lives: the container's labels still name the pool's id, and reconcile and the event
stream find the session through it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

import attr
from twisted.internet.defer import Deferred

from ..capacity import CapacityLimits, Claim, choose_starts
from .connection import SQLiteConnection, execute
from .records import ACTIVE_STATES, HOLDING_STATES, QUEUED, READY, STARTING, DesktopSession

POOL_STARTING, POOL_READY = "starting", "ready"

# A pre-start's outcomes: waiting to be opened, then opened or stopped unopened or ended
# otherwise; or no desktop was started for that pupil, and why.
PRESTARTED, OPENED, UNCLAIMED, ENDED = "started", "opened", "unclaimed", "ended"
ALREADY_RUNNING, NOT_ALLOWED, AT_LIMIT = "already-running", "not-allowed", "limit"


@attr.s(frozen=True, auto_attribs=True)
class PoolContainer:
    """A container of the warm pool: reserved (starting) or ready, and unclaimed or claimed."""

    id: str
    desktop: str
    state: str
    fingerprint: str
    vnc_password: str = attr.ib(repr=False)
    created: float
    memory: int = 0
    container_id: str | None = None
    host_port: int | None = None
    ready_at: float | None = None
    session_id: str | None = None
    claimed_at: float | None = None


@attr.s(frozen=True, auto_attribs=True)
class Prestart:
    """A desktop started for a pupil before a lesson, or the reason none was."""

    schedule: str
    lesson: float
    owner: str
    session_id: str | None
    outcome: str
    at: float
    claim_deadline: float


class PoolQueries(SQLiteConnection):
    """The pool_containers and prestarts tables."""

    # -- the pool -----------------------------------------------------------------------

    def reserve_pooled(self, entry: PoolContainer, limits: CapacityLimits) -> Deferred[bool]:
        """Add a pool container (state starting) if it fits now behind everyone queued: the
        pool refills only with capacity no queued start can use. False when it does not fit."""

        def reserve(c: sqlite3.Connection) -> bool:
            holding = _sessions(c, f"SELECT * FROM desktop_sessions WHERE state IN ({_marks(HOLDING_STATES)})",
                                HOLDING_STATES)
            queued = _sessions(c, "SELECT * FROM desktop_sessions WHERE state = ? ORDER BY created, rowid", (QUEUED,))
            claims = [*map(session_claim, holding), *pool_holdings(c)]
            wanted = [*map(session_claim, queued), Claim(entry.id, entry.desktop, entry.memory)]
            if entry.id not in choose_starts(claims, wanted, limits):
                return False
            row = attr.asdict(entry)
            c.execute(f"INSERT INTO pool_containers ({', '.join(row)}) VALUES ({', '.join(':' + n for n in row)})",
                      row)
            return True

        return self._run(reserve)

    def pool_started(self, pool_id: str, container_id: str, host_port: int | None) -> Deferred[bool]:
        """Note a reserved pool container's container; False when it was retired meanwhile."""
        return self._run(lambda c: c.execute(
            "UPDATE pool_containers SET container_id = ?, host_port = ? WHERE id = ? AND session_id IS NULL",
            (container_id, host_port, pool_id),
        ).rowcount == 1)

    def pool_ready(self, pool_id: str, now: float) -> Deferred[bool]:
        """A pool container's desktop answered: it may be claimed now. False when it is gone."""
        return self._run(lambda c: c.execute(
            "UPDATE pool_containers SET state = ?, ready_at = ? WHERE id = ? AND state = ? AND session_id IS NULL",
            (POOL_READY, now, pool_id, POOL_STARTING),
        ).rowcount == 1)

    def retire_pooled(self, pool_id: str) -> Deferred[PoolContainer | None]:
        """Take an unclaimed container out of the pool (its row goes); None when it was claimed
        or is gone already, so a claim and a retirement never both win."""

        def retire(c: sqlite3.Connection) -> PoolContainer | None:
            entry = _pool_one(c, "SELECT * FROM pool_containers WHERE id = ? AND session_id IS NULL", (pool_id,))
            if entry is not None:
                execute(c, "DELETE FROM pool_containers WHERE id = ?", (pool_id,))
            return entry

        return self._run(retire)

    def pooled(self) -> Deferred[list[PoolContainer]]:
        """The unclaimed pool containers, oldest first."""
        return self._run(lambda c: _pool_all(
            c, "SELECT * FROM pool_containers WHERE session_id IS NULL ORDER BY created, id", ()))

    def claimed_pool(self) -> Deferred[list[PoolContainer]]:
        """The pool containers claimed by sessions still recorded as theirs, latest claim first."""
        return self._run(lambda c: _pool_all(
            c, "SELECT * FROM pool_containers WHERE session_id IS NOT NULL ORDER BY claimed_at DESC, id", ()))

    def pool_entry(self, pool_id: str) -> Deferred[PoolContainer | None]:
        """One pool container, claimed or not, by its id (its container's session label)."""
        return self._run(lambda c: _pool_one(c, "SELECT * FROM pool_containers WHERE id = ?", (pool_id,)))

    def pool_claims(self) -> Deferred[dict[str, str]]:
        """Claimed pool containers: pool id (the container's session label) -> the session's id."""
        return self._run(lambda c: dict(c.execute(
            "SELECT id, session_id FROM pool_containers WHERE session_id IS NOT NULL").fetchall()))

    def forget_ended_claims(self) -> Deferred[int]:
        """Delete the rows of claimed pool containers whose session has ended; returns how many."""
        return self._run(lambda c: c.execute(
            "DELETE FROM pool_containers WHERE session_id IS NOT NULL AND NOT EXISTS"
            f" (SELECT 1 FROM desktop_sessions s WHERE s.id = session_id AND s.state IN ({_marks(ACTIVE_STATES)}))",
            ACTIVE_STATES,
        ).rowcount)

    # -- pre-starts ---------------------------------------------------------------------

    def prestarted_for(self, schedule: str, lesson: float) -> Deferred[set[str]]:
        """The pupils a lesson's pre-start has dealt with already (started or not, and why)."""
        return self._run(lambda c: {row[0] for row in c.execute(
            "SELECT owner FROM prestarts WHERE schedule = ? AND lesson = ?", (schedule, lesson))})

    def add_prestart(self, mark: Prestart) -> Deferred[None]:
        """Record a lesson's pre-start for one pupil (at most one per pupil and lesson), with an
        audit line in the same transaction."""

        def add(c: sqlite3.Connection) -> None:
            row = attr.asdict(mark)
            c.execute(f"INSERT OR IGNORE INTO prestarts ({', '.join(row)}) VALUES ({', '.join(':' + n for n in row)})",
                      row)
            execute(c, "INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                    (mark.at, f"schedule:{mark.schedule}", "prestart", mark.session_id or mark.owner,
                     f"{mark.owner} {mark.outcome}"))

        return self._run(add)

    def waiting_prestarts(self) -> Deferred[list[Prestart]]:
        """Pre-started desktops nobody has opened yet, the earliest deadline first."""
        return self._run(lambda c: _prestart_all(
            c, "SELECT * FROM prestarts WHERE outcome = ? ORDER BY claim_deadline", (PRESTARTED,)))

    def settle_prestart(self, session_id: str, outcome: str, now: float) -> Deferred[bool]:
        """A waiting pre-start was opened, stopped unopened or ended otherwise; False when it
        was settled already."""
        return self._run(lambda c: c.execute(
            "UPDATE prestarts SET outcome = ?, at = ? WHERE session_id = ? AND outcome = ?",
            (outcome, now, session_id, PRESTARTED),
        ).rowcount == 1)

    def prestarts_since(self, since: float) -> Deferred[list[Prestart]]:
        """The pre-starts of lessons that began at or after `since`, newest lesson first."""
        return self._run(lambda c: _prestart_all(
            c, "SELECT * FROM prestarts WHERE lesson >= ? ORDER BY lesson DESC, schedule, owner", (since,)))

    def prestarts_of(self, session_ids: Iterable[str]) -> Deferred[dict[str, Prestart]]:
        """The pre-start each of these sessions came from, if any."""
        ids = list(session_ids)
        return self._run(lambda c: {p.session_id: p for p in _prestart_all(
            c, f"SELECT * FROM prestarts WHERE session_id IN ({_marks(ids)})", ids) if p.session_id})


# -- used inside the queue's promotion (desktop_sessions._promote) --------------------------

def pool_holdings(c: sqlite3.Connection) -> list[Claim]:
    """What the unclaimed pool containers hold: they count towards every limit."""
    return [Claim(row["id"], row["desktop"], row["memory"], starting=row["state"] == POOL_STARTING)
            for row in c.execute("SELECT id, desktop, memory, state FROM pool_containers WHERE session_id IS NULL")]


def claim_pooled(c: sqlite3.Connection, queued: Iterable[DesktopSession], now: float) -> list[DesktopSession]:
    """Give queued sessions, in queue order, a ready container of their desktop from the pool
    (the oldest first: fresh ones replace it), and audit each claim. The container's capacity
    becomes the session's, so no limit is asked again. Returns the sessions, ready at once: the
    container answered when it joined the pool, and one that died since has left it (events)."""
    claimed = []
    for session in queued:
        row = c.execute(
            "SELECT * FROM pool_containers WHERE desktop = ? AND state = ? AND session_id IS NULL"
            " ORDER BY created, id LIMIT 1", (session.desktop, POOL_READY),
        ).fetchone()
        if row is None:
            continue
        execute(c, "UPDATE pool_containers SET session_id = ?, claimed_at = ? WHERE id = ?",
                (session.id, now, row["id"]))
        execute(
            c, "UPDATE desktop_sessions SET state = ?, container_id = ?, host_port = ?, vnc_password = ?,"
            " ready_at = ?, last_connected = ?, updated = ? WHERE id = ? AND state = ?",
            (READY, row["container_id"], row["host_port"], row["vnc_password"], now, now, now, session.id, QUEUED),
        )
        execute(c, "INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                (now, session.owner, "pool-claim", session.id, f"{session.desktop} {row['container_id'][:12]}"))
        (taken,) = _sessions(c, "SELECT * FROM desktop_sessions WHERE id = ?", (session.id,))
        claimed.append(taken)
    return claimed


def session_claim(session: DesktopSession) -> Claim:
    """What a session holds, or would hold once started."""
    return Claim(session.id, session.desktop, session.memory, starting=session.state == STARTING)


def _marks(values: Iterable[Any]) -> str:
    return ",".join("?" for _ in values)


def _sessions(c: sqlite3.Connection, sql: str, params: Iterable[Any]) -> list[DesktopSession]:
    return [DesktopSession(**{key: row[key] for key in row.keys()}) for row in c.execute(sql, tuple(params))]


def _pool_one(c: sqlite3.Connection, sql: str, params: Iterable[Any]) -> PoolContainer | None:
    found = _pool_all(c, sql, params)
    return found[0] if found else None


def _pool_all(c: sqlite3.Connection, sql: str, params: Iterable[Any]) -> list[PoolContainer]:
    return [PoolContainer(**{key: row[key] for key in row.keys()}) for row in c.execute(sql, tuple(params))]


def _prestart_all(c: sqlite3.Connection, sql: str, params: Iterable[Any]) -> list[Prestart]:
    return [Prestart(**{key: row[key] for key in row.keys()}) for row in c.execute(sql, tuple(params))]
