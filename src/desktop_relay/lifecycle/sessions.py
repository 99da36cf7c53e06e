"""Desktop sessions from start to end: admission into the queue, the container's start (the
background work of it in launch.py), and every kind of stop, with why it happened.

The rules that keep store and engine in step live here: a session row exists before its
container; a start answers at once (queued or starting) and the container is made in the
background; a container never outlives its session; a failed start leaves a `failed` row with
its reason and no container; every end records its reason code and the words the user sees;
a container starts with its user's home volume (made first) and the shares they may see.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Generator, Mapping
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..auth import Identity
from ..backend import Backend
from ..capacity import CapacityLimits
from ..classwork.service import Classwork
from ..config import DesktopType, ShareSettings
from ..engine.interface import (
    ContainerEngineUnavailable,
    IContainerProvisioner,
)
from ..homes.interface import IHomeVolumes
from ..i18n import N_
from ..metrics import RelayMetrics
from ..store import (
    FAILED,
    QUEUED,
    READY,
    STARTING,
    STOPPED,
    STOPPING,
    DesktopSession,
    SQLiteStore,
)
from .activity import ActivityTracker
from .engine import EngineState
from .launch import ContainerLaunch
from .policy import Timing, timing
from .reasons import (
    IDLE,
    LIFETIME,
    SERVER_ERROR,
    USER,
    minutes,
)
from .watch import SessionWatch


class UnknownDesktop(Exception):
    """No [desktop:NAME] of that name is configured."""


class DesktopNotAllowed(Exception):
    """The user's groups do not admit them to that desktop."""


def new_session_id() -> str:
    """A random, unguessable session id: 160 bits, URL-safe."""
    return secrets.token_urlsafe(20)


#: Told when a session ends, with the close code's reason words, so its connections close.
SessionEnded = Callable[[str, str], object]


class DesktopSessions(ContainerLaunch):
    """Starts and stops users' desktop sessions; every decision about capacity goes through the store."""

    _log = Logger()

    def __init__(
        self,
        *,
        store: SQLiteStore,
        provisioner: IContainerProvisioner,
        probe: Callable[[Backend], Deferred[bool]],
        clock: IReactorTime,
        desktops: Mapping[str, DesktopType],
        instance: str,
        max_per_user: int,
        start_timeout: float,
        stop_timeout: int,
        limits: CapacityLimits | None = None,
        engine: EngineState | None = None,
        activity: ActivityTracker | None = None,
        watch: SessionWatch | None = None,
        connected: Callable[[str], int] = lambda session_id: 0,
        on_session_ended: SessionEnded = lambda session_id, reason: None,
        metrics: RelayMetrics | None = None,
        homes: IHomeVolumes | None = None,
        shares: Mapping[str, ShareSettings] | None = None,
        classwork: Classwork | None = None,
    ) -> None:
        """`homes` None: desktops start without a home (for tests of other concerns); `shares`
        are mounted read-only into the desktops of those who may see them."""
        self._store = store
        self.provisioner = provisioner
        self.homes = homes
        # Hand-outs and hand-ins mounted into homes (None: none, for tests of other concerns).
        self.classwork = classwork
        self._shares = shares or {}
        self._probe = probe
        self._clock = clock
        self._desktops = desktops
        self.instance = instance
        self._max_per_user = max_per_user
        self._start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._limits = limits or CapacityLimits()
        self.engine = engine or EngineState(clock)
        self.activity = activity or ActivityTracker(clock)
        self.watch = watch or SessionWatch(clock)
        self._connected = connected
        self._on_session_ended = on_session_ended
        self._metrics = metrics or RelayMetrics()
        # Sessions whose container this process is creating or waiting for: reconcile must
        # not start a second creation or wait for them.
        self._working: dict[str, Deferred[None]] = {}
        # The warning each ready session's user was last shown, to notice when it changes.
        self._warnings: dict[str, tuple[str, float] | None] = {}
        # Desktops a reload removed: no longer offered or started, but their running sessions
        # keep their policies and their owners' access until they end.
        self._retired: dict[str, DesktopType] = {}
        # Ready sessions started before a lesson for a pupil who has not opened them yet
        # (prestart.py decides): no idle or disconnect clock runs for them.
        self._held: frozenset[str] = frozenset()
        # The desktops teachers' assignments offer a person now (lifecycle/assignments.py).
        self.offered: Callable[[Identity], frozenset[str]] = lambda identity: frozenset()

    # -- the catalogue ------------------------------------------------------------------

    def desktops_for(self, identity: Identity) -> list[DesktopType]:
        """The desktops this user may start, in configuration order."""
        offered = self.offered(identity)
        return [d for d in self._desktops.values() if self.may_start(identity, d, offered)]

    def may_start(self, identity: Identity, desktop: DesktopType, offered: frozenset[str] | None = None) -> bool:
        """The one decision whether someone may start (and reach) a desktop: relay.ini's groups
        and users, or a current assignment to a class of theirs of a desktop teachers may assign."""
        if desktop.allows(identity.user_id, identity.groups):
            return True
        if not desktop.teachers_may_assign:
            return False
        return desktop.name in (self.offered(identity) if offered is None else offered)

    def desktop(self, name: str) -> DesktopType | None:
        """A desktop type by name: a configured one, or one a reload removed (for the sessions
        still running it)."""
        return self._desktops.get(name) or self._retired.get(name)

    @property
    def desktops(self) -> Mapping[str, DesktopType]:
        """The configured desktops (the ones offered and started), in configuration order."""
        return self._desktops

    @property
    def retired(self) -> Mapping[str, DesktopType]:
        """Desktops a reload removed, kept for the sessions that may still run them."""
        return self._retired

    @property
    def limits(self) -> CapacityLimits:
        return self._limits

    @property
    def max_per_user(self) -> int:
        return self._max_per_user

    def reconfigure(self, desktops: Mapping[str, DesktopType], limits: CapacityLimits, max_per_user: int) -> None:
        """Take a reloaded relay.ini's desktops and limits. New starts follow them at once; queued
        starts of a removed desktop fail when their turn comes; running ones go on until they end."""
        for name, removed in self._desktops.items():
            if name not in desktops:
                self._retired[name] = removed
        for name in desktops:
            self._retired.pop(name, None)
        self._desktops = desktops
        self._limits = limits
        self._max_per_user = max_per_user

    def set_memory_budget(self, budget: int | None) -> None:
        """The memory budget once the engine said how much memory it has ([sessions] memory_budget = auto)."""
        self._limits = CapacityLimits(
            max_total=self._limits.max_total, max_starting=self._limits.max_starting,
            memory_budget=budget, per_desktop=self._limits.per_desktop, max_queued=self._limits.max_queued,
        )

    def now(self) -> float:
        """The lifecycle's clock."""
        return self._clock.seconds()

    def backend_of(self, session: DesktopSession) -> Backend | None:
        """Where a ready session's container listens, or None when it has no port yet."""
        if session.host_port is None:
            return None
        return Backend("127.0.0.1", session.host_port, session.vnc_password)

    def timing_of(self, session: DesktopSession) -> Timing | None:
        """A ready session's deadlines and warning, from the freshest clocks this process has."""
        if session.state != READY:
            return None
        return timing(
            session, self.desktop(session.desktop), now=self._clock.seconds(),
            last_input=self.activity.last_input(session.id),
            last_connected=self.activity.last_connected(session.id),
            connected=self._connected(session.id) > 0,
        )

    # -- starting -----------------------------------------------------------------------

    @inlineCallbacks
    def start(
        self, identity: Identity, desktop_name: str, queue: bool = True
    ) -> Generator[Deferred[Any], Any, tuple[DesktopSession, bool]]:
        """Ask for a desktop for a user; returns (session, created) without waiting for the engine.

        The new session is `starting` when it fits now (with a ready pooled container if there
        is one), else `queued`, or with `queue` False refused with NoRoomNow; an active session
        of the same desktop is returned instead of a second one (created False). Raises
        UnknownDesktop, DesktopNotAllowed, and from the store SessionLimitReached, DoesNotFit,
        QueueFull; ContainerEngineUnavailable when the session to hand back cannot be confirmed.
        """
        desktop = self._desktops.get(desktop_name)
        if desktop is None:
            raise UnknownDesktop(desktop_name)
        if not self.may_start(identity, desktop):
            raise DesktopNotAllowed(desktop_name)
        now = self._clock.seconds()
        candidate = DesktopSession(
            id=new_session_id(), owner=identity.user_id, desktop=desktop_name, state=QUEUED,
            reason=None, container_id=None, host_port=None, vnc_password=secrets.token_urlsafe(24),
            created=now, updated=now, memory=desktop.memory_bytes,
        )
        session, created, started = yield self._store.admit(
            candidate, self._limits, self._max_per_user, can_start=self.engine.available, queue=queue
        )
        if not created:
            if session.state == READY and not self.engine.available:
                # Its container cannot be confirmed: handing it back could mean a dead page.
                raise ContainerEngineUnavailable(self.engine.problem or "the container engine is unreachable")
            return (session, False)
        if session.state == QUEUED:
            self._log.info(
                "session {session}: {user} queued for {desktop}", session=session.id,
                user=identity.user_id, desktop=desktop_name,
            )
        self._launch_all(started)
        return (session, True)

    @inlineCallbacks
    def drain(self) -> Generator[Deferred[Any], Any, list[DesktopSession]]:
        """Start the queued sessions that fit now (after a stop, a failure, or the engine's return)."""
        if not self.engine.available:
            return []
        started = yield self._store.promote(self._limits, self._clock.seconds())
        self._launch_all(started)
        if started:
            yield self._queue_moved()
        return started

    @inlineCallbacks
    def _queue_moved(self) -> Generator[Deferred[Any], Any, None]:
        positions = yield self._store.queue_positions()
        self.watch.changed(positions)

    def _launch_all(self, started: list[DesktopSession]) -> None:
        for session in started:
            # Every start passes through the queue (a start that fits at once waits 0 s).
            self._metrics.start_left_queue(session.desktop, session.updated - session.created)
            self.watch.changed([session.id])
            if session.state == READY and session.ready_at is not None:
                # It took a ready container from the warm pool: nothing is left to wait for.
                self._metrics.start_ready(session.desktop, session.ready_at - session.created)
                self._log.info(
                    "session {session}: {user} took pooled container {container} of {desktop}",
                    session=session.id, user=session.owner, container=(session.container_id or "")[:12],
                    desktop=session.desktop,
                )
            else:
                self._work(session, self._launch(session))

    def _work(self, session: DesktopSession, d: Deferred[None]) -> None:
        if session.id in self._working:
            d.cancel()
            return
        self._working[session.id] = d

        def bug(failure: Failure) -> Deferred[None] | None:
            if failure.check(CancelledError):
                return None
            # A bug, not the engine: the user is told, the session does not hang in starting.
            self._log.failure("starting session {session} failed", failure, session=session.id)
            return self._fail(
                session, SERVER_ERROR, N_("The desktop could not be started because of an error on the server.")
            )

        def done(_: object) -> None:
            self._working.pop(session.id, None)

        d.addErrback(bug)
        d.addBoth(done)

    # -- stopping -----------------------------------------------------------------------

    @inlineCallbacks
    def stop(
        self, session: DesktopSession, actor: str, end_reason: str = USER,
        reason: str = N_("Stopped by you."),
    ) -> Generator[Deferred[Any], Any, DesktopSession]:
        """Stop a session (or cancel a queued start): close its connections, remove its
        container, mark it stopped with why.

        If the engine is unreachable the session stays `stopping` (and the error propagates);
        reconcile finishes the job once the engine is back.
        """
        queued = yield self._store.update_session(
            session.id, self._clock.seconds(), expect=[QUEUED], state=STOPPED, reason=reason, end_reason=end_reason,
        )
        if queued is not None:
            self._log.info("session {session}: queued start cancelled ({end_reason})",
                           session=session.id, end_reason=end_reason)
            yield self._audit(actor, "cancel", session.id, end_reason)
            self.watch.changed([session.id])
            yield self._queue_moved()
            return queued
        stopping = yield self._store.update_session(
            session.id, self._clock.seconds(), expect=[STARTING, READY], state=STOPPING, reason=reason,
            end_reason=end_reason,
        )
        if stopping is None:
            return (yield self._store.get_session(session.id))
        self._ended(session.id, reason)
        yield self._audit(actor, "stop", session.id, end_reason)
        return (yield self.finish_stop(stopping))

    @inlineCallbacks
    def stop_all_of(self, user_id: str, actor: str, end_reason: str, reason: str) -> Generator[Deferred[Any], Any, int]:
        """Stop every active session of a user (signed out everywhere, say); returns how many."""
        stopped = 0
        for session in (yield self._store.sessions_of(user_id)):
            if session.state in (QUEUED, STARTING, READY):
                yield self.stop(session, actor, end_reason, reason)
                stopped += 1
        return stopped

    @inlineCallbacks
    def finish_stop(self, session: DesktopSession) -> Generator[Deferred[Any], Any, DesktopSession]:
        """Remove a stopping session's container and mark it stopped; then start what now fits."""
        if session.container_id:
            yield self.provisioner.remove(session.container_id, self.stop_timeout)
        stopped = yield self._store.update_session(
            session.id, self._clock.seconds(), expect=[STOPPING], state=STOPPED
        )
        self._log.info("session {session} stopped ({end_reason}): {reason}", session=session.id,
                       end_reason=session.end_reason, reason=session.reason)
        self.watch.changed([session.id])
        yield self.drain()
        return stopped or session

    @inlineCallbacks
    def end(
        self, session: DesktopSession, end_reason: str, reason: str, failure: str | None = None
    ) -> Generator[Deferred[Any], Any, bool]:
        """A session's container is gone or dead without our asking: end the session with why
        (and, for a start, `failure`), close its connections, remove what is left. False if it had
        already ended."""
        ended = yield self._store.update_session(
            session.id, self._clock.seconds(), expect=[STARTING, READY, STOPPING],
            state=STOPPED if session.state != STARTING else FAILED, reason=reason, end_reason=end_reason,
            failure=failure if session.state == STARTING else None,
        )
        if ended is None:
            return False
        self._ended(session.id, reason)
        self._log.warn("session {session} of {user} ended ({end_reason}): {reason}", session=session.id,
                       user=session.owner, end_reason=end_reason, reason=reason)
        yield self._audit("engine", "end", session.id, end_reason)
        self.watch.changed([session.id])
        if ended.container_id:
            yield self.remove_quietly(ended.container_id)
        yield self.drain()
        return True

    def _ended(self, session_id: str, reason: str) -> None:
        self.activity.forget(session_id)
        self._warnings.pop(session_id, None)
        self._on_session_ended(session_id, reason)

    @inlineCallbacks
    def remove_quietly(self, container_id: str) -> Generator[Deferred[Any], Any, None]:
        """Remove a container, leaving it to reconcile when the engine cannot be reached now."""
        try:
            yield self.provisioner.remove(container_id, self.stop_timeout)
        except ContainerEngineUnavailable as e:
            self._log.warn("could not remove container {container} now: {problem}",
                           container=container_id[:12], problem=str(e))

    # -- the idle, lifetime and disconnect policies -------------------------------------

    def hold(self, session_ids: frozenset[str]) -> None:
        """These ready sessions wait, pre-started, for their pupil to open them: the reaper
        leaves them alone (the lesson's claim window decides their end, prestart.py)."""
        self._held = session_ids

    @inlineCallbacks
    def reap(self) -> Generator[Deferred[Any], Any, None]:
        """Stop the ready sessions whose deadline passed; update warnings; persist activity."""
        for session in (yield self._store.sessions_in(READY)):
            if session.id in self._held:
                continue
            if self._connected(session.id) > 0:
                self.activity.connected(session.id)
            t = self.timing_of(session)
            if t is None:
                continue
            if t.due is not None:
                desktop = self.desktop(session.desktop)
                assert desktop is not None
                yield self.stop(session, "relay", t.due, _policy_words(t.due, desktop))
                continue
            if self._warnings.get(session.id) != t.warning:
                self._warnings[session.id] = t.warning
                if t.warning is not None:
                    self._log.info("session {session}: warned of a {policy} stop in {seconds:.0f}s",
                                   session=session.id, policy=t.warning[0],
                                   seconds=t.warning[1] - self._clock.seconds())
                self.watch.changed([session.id])
        yield self.flush_activity()

    def flush_activity(self) -> Deferred[None]:
        """Write the clocks that moved since the last flush."""
        dirty = self.activity.take_dirty()
        return self._store.record_activity(dirty) if dirty else succeed(None)

    def input_seen(self, session_id: str) -> None:
        """The bridge saw user input: note it, and lift a warning at once rather than next tick."""
        self.activity.touch(session_id)
        warning = self._warnings.get(session_id)
        if warning is not None and warning[0] == IDLE:
            self._warnings[session_id] = None
            self.watch.changed([session_id])

    def _audit(self, actor: str, action: str, target: str, detail: str = "") -> Deferred[None]:
        return self._store.audit(self._clock.seconds(), actor, action, target, detail)

    def working(self) -> list[Deferred[None]]:
        """Container creations and readiness waits in progress (for orderly shutdown and tests)."""
        return list(self._working.values())



def _policy_words(policy: str, desktop: DesktopType) -> str:
    if policy == IDLE:
        assert desktop.idle_timeout is not None
        return N_("Stopped after {duration} without input.").format(duration=minutes(desktop.idle_timeout))
    if policy == LIFETIME:
        assert desktop.max_lifetime is not None
        return N_("Stopped after its maximum time of {duration}.").format(duration=minutes(desktop.max_lifetime))
    assert desktop.disconnect_grace is not None
    return N_("Stopped after {duration} with no browser connected.").format(duration=minutes(desktop.disconnect_grace))
