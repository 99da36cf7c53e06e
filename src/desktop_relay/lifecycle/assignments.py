"""Which desktops teachers' assignments offer whom, now: the open assignments kept in memory, so
the one decision about who may start what (DesktopSessions.may_start) stays synchronous; and
the end of an assignment (its until passing, or a teacher ending it) stops the desktops it let
its class's pupils start, with end reason `teacher`.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ..auth import PUPIL, Identity
from ..i18n import N_
from ..store import ACTIVE_STATES, Assignment, SQLiteStore
from .reasons import TEACHER
from .sessions import DesktopSessions

# The words stored with a desktop stopped because the assignment that offered it ended.
ASSIGNMENT_ENDED = N_("Stopped because your teacher's offer of this desktop ended.")


class ClassAssignments:
    """The open assignments (current or to come), the desktops they offer, and their ends."""

    _log = Logger()

    def __init__(self, store: SQLiteStore, sessions: DesktopSessions, clock: IReactorTime) -> None:
        self._store = store
        self._sessions = sessions
        self._clock = clock
        self._open: list[Assignment] = []
        # The ones current at the last load: those no longer current at the next have ended.
        self._was_current: list[Assignment] = []
        self._timer: IDelayedCall | None = None
        sessions.offered = self.offered

    def offered(self, identity: Identity) -> frozenset[str]:
        """The desktops assignments offer this person now: a pupil of a class with a current one."""
        if identity.role != PUPIL:
            return frozenset()
        now = self._clock.seconds()
        return frozenset(a.desktop for a in self._open if a.class_group in identity.groups and a.current(now))

    def current(self) -> list[Assignment]:
        """The assignments offered now."""
        now = self._clock.seconds()
        return [a for a in self._open if a.current(now)]

    @inlineCallbacks
    def load(self, actor: str = "relay") -> Generator[Deferred[Any], Any, int]:
        """Read the open assignments again (at start-up and after every change), stop what the
        ones that ended since offered (as `actor`), and wait for the next start or end. Returns
        how many desktops were stopped."""
        self._open = yield self._store.open_assignments(self._clock.seconds())
        before, self._was_current = self._was_current, self.current()
        now_current = {a.id for a in self._was_current}
        self._schedule()
        stopped = 0
        for gone in before:
            if gone.id not in now_current:
                stopped += yield self.stop_desktops_of(gone, actor)
        return stopped

    @inlineCallbacks
    def start(self, since: float) -> Generator[Deferred[Any], Any, int]:
        """At start-up: the assignments that ended since `since` (while no relay ran, say) are
        taken as current before, so the desktops they offered are stopped now."""
        self._was_current = yield self._store.ended_since(since, self._clock.seconds())
        return (yield self.load())

    @inlineCallbacks
    def stop_desktops_of(self, assignment: Assignment, actor: str) -> Generator[Deferred[Any], Any, int]:
        """Stop the desktops of `assignment`'s class's pupils that nothing lets them start now
        (not relay.ini, not another current assignment); returns how many."""
        stopped = 0
        for pupil in (yield self._store.members_seen(assignment.class_group)):
            identity = Identity(pupil.user_id, pupil.display_name, pupil.groups, pupil.role)
            desktop = self._sessions.desktop(assignment.desktop)
            if desktop is not None and self._sessions.may_start(identity, desktop):
                continue
            for session in (yield self._store.sessions_of(pupil.user_id)):
                if session.desktop == assignment.desktop and session.state in ACTIVE_STATES:
                    yield self._sessions.stop(session, actor, TEACHER, ASSIGNMENT_ENDED)
                    stopped += 1
        if stopped:
            self._log.info("assignment {assignment} of {desktop} to {class_group} ended: stopped {count} desktop(s)",
                           assignment=assignment.id, desktop=assignment.desktop,
                           class_group=assignment.class_group, count=stopped)
        return stopped

    def stop(self) -> None:
        """No more timers (the relay is stopping)."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _schedule(self) -> None:
        self.stop()
        now = self._clock.seconds()
        moments = [t for a in self._open for t in (a.starts, a.ends) if t > now]
        if not moments:
            return
        self._timer = self._clock.callLater(min(moments) - now, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.load().addErrback(lambda failure: self._log.failure("cannot bring the assignments up to date", failure))
