"""Desktops started before the lesson: `lead` before each lesson of a `[schedule:NAME]`, its desktop
is started for every member of its group the relay knows from earlier sign-ins, through the normal
start path (so with the pupil's home), within capacity and behind everyone queued; one nobody
opened `claim_window` after the lesson began is stopped (end reason `unclaimed`).

What was started for whom is in the store (prestarts), so a restart neither starts a lesson's
desktops twice nor forgets to stop the unopened ones.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..auth import Identity
from ..backend import Backend
from ..capacity import DoesNotFit, NoRoomNow, SessionLimitReached
from ..config import ScheduleSettings
from ..engine.interface import ContainerEngineUnavailable
from ..i18n import N_
from ..store import READY, AuditFilter, DesktopSession, Prestart, SQLiteStore
from ..store.pool import ALREADY_RUNNING, AT_LIMIT, ENDED, NOT_ALLOWED, OPENED, PRESTARTED, UNCLAIMED
from .reasons import UNCLAIMED as UNCLAIMED_END
from .reasons import minutes
from .sessions import DesktopNotAllowed, DesktopSessions, UnknownDesktop
from .timetable import Lesson, Timetable


class ClientFetcher(Protocol):
    """Fetches a session's web client ahead for its owner (relay/client_warmup.py)."""

    def warm(self, session_id: str, user_id: str, backend: Backend) -> Deferred[int]: ...

    def keep_only(self, session_ids: frozenset[str]) -> None: ...


class LessonPrestarts:
    """Runs the schedules: pre-starts before lessons, and the claim windows after they begin."""

    _log = Logger()

    def __init__(
        self, sessions: DesktopSessions, store: SQLiteStore, clock: IReactorTime,
        schedules: Mapping[str, tuple[ScheduleSettings, Timetable]], connected: Callable[[str], int],
        fetch_client: ClientFetcher | None = None,
    ) -> None:
        """`fetch_client`: fetches a ready pre-started desktop's web client ahead for its pupil
        (relay/client_warmup.py), so that their first load is a quick one."""
        self._sessions = sessions
        self._store = store
        self._clock = clock
        self._schedules = schedules
        self._connected = connected
        self._fetch_client = fetch_client
        # Pre-started sessions whose client was fetched ahead, or is being fetched.
        self._fetched: set[str] = set()
        self._fetching: set[str] = set()
        # Lessons whose "no room for everyone" was logged: once per lesson, not every tick.
        self._short_of_room: set[tuple[str, float]] = set()

    @inlineCallbacks
    def tick(self) -> Generator[Deferred[Any], Any, None]:
        """Pre-start what a lesson within its lead needs, and settle the claim windows (the
        lifecycle's tick calls this before the reaper, which leaves unopened ones alone)."""
        now = self._clock.seconds()
        for settings, timetable in self._schedules.values():
            yield timetable.refresh()
            for lesson in timetable.lessons(now, now + settings.lead):
                yield self._prestart(settings, lesson, now)
        yield self._watch_claims(now)

    def upcoming(self, now: float, within: float) -> list[tuple[ScheduleSettings, list[Lesson]]]:
        """Each schedule, with its lessons that begin within `within` seconds from `now`."""
        return [(settings, timetable.lessons(now, now + within)) for settings, timetable in self._schedules.values()]

    @inlineCallbacks
    def _prestart(self, settings: ScheduleSettings, lesson: Lesson, now: float) -> Generator[Deferred[Any], Any, None]:
        done = yield self._store.prestarted_for(settings.name, lesson.start)
        members = yield self._store.members_seen(settings.group)
        started = no_room = 0
        for user in members:
            if user.user_id in done:
                continue
            identity = Identity(user.user_id, user.display_name, user.groups, user.role)
            session_id = None
            try:
                session, created = yield self._sessions.start(identity, settings.desktop, queue=False)
            except (NoRoomNow, DoesNotFit):
                no_room += 1  # tried again next tick, until the lesson begins
                continue
            except DesktopNotAllowed:
                outcome = NOT_ALLOWED
            except SessionLimitReached:
                outcome = AT_LIMIT
            except (UnknownDesktop, ContainerEngineUnavailable) as e:
                self._log.warn("schedule {schedule}: no pre-start now: {problem}", schedule=settings.name,
                               problem=str(e) or type(e).__name__)
                return
            else:
                outcome = PRESTARTED if created else ALREADY_RUNNING
                session_id = session.id if created else None
                started += created
            yield self._store.add_prestart(Prestart(
                schedule=settings.name, lesson=lesson.start, owner=user.user_id, session_id=session_id,
                outcome=outcome, at=now, claim_deadline=lesson.start + settings.claim_window,
            ))
        lesson_time = _local(lesson.start, settings.timezone)
        if started:
            self._log.info("schedule {schedule}: {count} desktop(s) of {desktop} started for the lesson at {lesson}",
                           schedule=settings.name, count=started, desktop=settings.desktop, lesson=lesson_time)
        if no_room and (settings.name, lesson.start) not in self._short_of_room:
            self._short_of_room.add((settings.name, lesson.start))
            self._log.warn("schedule {schedule}: no room yet for {count} desktop(s) for the lesson at {lesson};"
                           " trying until it begins", schedule=settings.name, count=no_room, lesson=lesson_time)

    @inlineCallbacks
    def _watch_claims(self, now: float) -> Generator[Deferred[Any], Any, None]:
        held = set()
        for mark in (yield self._store.waiting_prestarts()):
            assert mark.session_id is not None
            session = yield self._store.get_session(mark.session_id)
            if session is None or not session.active:
                yield self._store.settle_prestart(mark.session_id, ENDED, now)
            elif session.state == READY and (yield self._opened(session.id)):
                # Its idle clock starts now, when the pupil came, not when it was started for them.
                self._sessions.activity.touch(session.id)
                yield self._store.settle_prestart(mark.session_id, OPENED, now)
                self._log.info("session {session}: pre-started for {user}, opened", session=session.id,
                               user=session.owner, schedule=mark.schedule)
            elif now >= mark.claim_deadline:
                window = mark.claim_deadline - mark.lesson
                words = N_("Started for your lesson and stopped because nobody opened it within {duration}.")
                yield self._sessions.stop(session, f"schedule:{mark.schedule}", UNCLAIMED_END,
                                          words.format(duration=minutes(window)))
                yield self._store.settle_prestart(mark.session_id, UNCLAIMED, now)
            else:
                held.add(session.id)
                if session.state == READY:
                    self._fetch_ahead(session)
        self._sessions.hold(frozenset(held))
        if self._fetch_client is not None:
            self._fetch_client.keep_only(frozenset(held))
        self._fetched &= held

    def _fetch_ahead(self, session: DesktopSession) -> None:
        """Fetch its client ahead, in the background (the other pre-starts' claim windows do not
        wait for it); each tick again until some files were had (client_warmup.py says when)."""
        backend = self._sessions.backend_of(session)
        if self._fetch_client is None or backend is None or session.id in self._fetched | self._fetching:
            return
        self._fetching.add(session.id)

        def done(kept: int) -> None:
            self._fetching.discard(session.id)
            if kept:
                self._fetched.add(session.id)

        self._fetch_client.warm(session.id, session.owner, backend).addCallback(done)


    @inlineCallbacks
    def _opened(self, session_id: str) -> Generator[Deferred[Any], Any, bool]:
        """Whether the pupil came: connected now, typed, or connected since the last tick (the
        audit trail has a line for every desktop connection)."""
        if self._connected(session_id) > 0 or self._sessions.activity.last_input(session_id) is not None:
            return True
        return bool((yield self._store.audit_trail(1, AuditFilter(target=session_id, action="connect"))))


def _local(at: float, zone: str) -> str:
    """A lesson's time as the timetable says it, for log lines."""
    return datetime.fromtimestamp(at, ZoneInfo(zone)).strftime("%a %Y-%m-%d %H:%M")
