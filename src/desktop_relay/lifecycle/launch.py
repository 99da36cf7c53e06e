"""A start's background work, part of DesktopSessions: the user's home made and mounted, the
container created, the wait until its desktop answers, and a failed start marked with why.

A mixin rather than a class of its own because it works on the same state as the rest of the
session lifecycle (the queue it hands back to, the watch it tells, the sessions in work); what it
uses of DesktopSessions is declared below.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from ..backend import Backend
from ..classwork.service import Classwork
from ..config import DesktopType, ShareSettings
from ..engine.interface import (
    ContainerEngineTimedOut,
    ContainerEngineUnavailable,
    ContainerSpec,
    ContainerStartFailed,
    DesktopImageMissing,
    IContainerProvisioner,
    Mount,
)
from ..homes import home_for
from ..homes.interface import HomeVolumeFailed, IHomeVolumes
from ..homes.mounts import desktop_mounts
from ..i18n import N_
from ..metrics import RelayMetrics
from ..store import FAILED, QUEUED, READY, STARTING, DesktopSession, SQLiteStore
from .engine import EngineState
from .reasons import (
    CRASHED,
    ENGINE_REFUSED,
    ENGINE_TIMEOUT,
    IMAGE_MISSING,
    NOT_READY,
    OUT_OF_MEMORY,
    START_FAILED,
    WITHDRAWN,
)
from .watch import SessionWatch

# How often a starting container is asked whether it is ready yet: often at first (a small
# desktop answers within half a second), then less.
PROBE_INTERVALS = (0.1, 0.1, 0.1, 0.2, 0.2, 0.3)
PROBE_INTERVAL = 0.5


class ContainerLaunch:
    """The start's work on the engine, mixed into DesktopSessions."""

    # What DesktopSessions provides (its __init__ sets them).
    _log: Logger
    _store: SQLiteStore
    _clock: IReactorTime
    _desktops: Mapping[str, DesktopType]
    _shares: Mapping[str, ShareSettings]
    _probe: Callable[[Backend], Deferred[bool]]
    _start_timeout: float
    _metrics: RelayMetrics
    _working: dict[str, Deferred[None]]
    provisioner: IContainerProvisioner
    homes: IHomeVolumes | None
    classwork: Classwork | None
    instance: str
    engine: EngineState
    watch: SessionWatch

    if TYPE_CHECKING:
        def _work(self, session: DesktopSession, d: Deferred[None]) -> None: ...

        def backend_of(self, session: DesktopSession) -> Backend | None: ...

        def drain(self) -> Deferred[list[DesktopSession]]: ...

        def remove_quietly(self, container_id: str) -> Deferred[None]: ...

        def _audit(self, actor: str, action: str, target: str, detail: str = "") -> Deferred[None]: ...

    @inlineCallbacks
    def _launch(self, session: DesktopSession) -> Generator[Deferred[Any], Any, None]:
        desktop = self._desktops.get(session.desktop)
        if desktop is None:
            yield self._fail(session, WITHDRAWN, N_("This desktop is no longer offered."))
            return
        mounts = yield self._mounts(session, desktop)
        if mounts is None:
            return
        spec = ContainerSpec(session.id, session.owner, self.instance, desktop, session.vnc_password, mounts)
        try:
            info = yield self.provisioner.start(spec)
        except ContainerEngineTimedOut as e:
            # The engine may still carry out the create: the provisioner removes what appears,
            # and the event follower removes any container of a session that is not starting.
            yield self._fail(session, ENGINE_TIMEOUT,
                             N_("The desktop server did not answer in time. Please try again."), str(e))
            return
        except ContainerEngineUnavailable as e:
            yield self._requeue(session, e)
            return
        except ContainerStartFailed as e:
            yield self._fail(session, IMAGE_MISSING if isinstance(e, DesktopImageMissing) else ENGINE_REFUSED, str(e))
            return
        updated = yield self._store.update_session(
            session.id, self._clock.seconds(), expect=[STARTING],
            container_id=info.container_id, host_port=info.host_port,
        )
        if updated is None:
            # Stopped while the engine was creating it: do not leave the container behind.
            yield self.remove_quietly(info.container_id)
            return
        # The next step (waiting for the desktop to answer): pages following the start show it.
        self.watch.changed([session.id])
        self._log.info(
            "session {session}: {user} started {desktop} in container {container}",
            session=session.id, user=session.owner, desktop=session.desktop, container=info.container_id[:12],
        )
        yield self._wait_until_ready(updated)

    @inlineCallbacks
    def _mounts(
        self, session: DesktopSession, desktop: DesktopType
    ) -> Generator[Deferred[Any], Any, tuple[Mount, ...] | None]:
        """The mounts of a session's container, its home volume made first; None when the start
        cannot go on (it failed, or waits in the queue for the engine)."""
        home = home_for(self.instance, desktop, session.owner) if self.homes is not None else None
        if home is not None:
            assert self.homes is not None
            try:
                yield self.homes.ensure(home)
            except ContainerEngineTimedOut as e:
                # As for the container: a hung engine is not a lost one (its event stream stays
                # open, so nothing would tell the relay it is back); the user may try again.
                yield self._fail(session, ENGINE_TIMEOUT,
                                 N_("The desktop server did not answer in time. Please try again."), str(e))
                return None
            except ContainerEngineUnavailable as e:
                yield self._requeue(session, e)
                return None
            except HomeVolumeFailed as e:
                yield self._fail(session, ENGINE_REFUSED,
                                 N_("Your home folder could not be prepared: {reason}").format(reason=str(e)))
                return None
            yield self._store.home_used(home, self._clock.seconds())
        # Shares follow the groups of the user's last sign-in, as the pre-started desktops of a
        # schedule do, which start with nobody signed in.
        seen = yield self._store.seen_user(session.owner)
        mounts = desktop_mounts(home, desktop, self._shares, session.owner, seen.groups if seen else frozenset())
        if self.classwork is None or seen is None or home is None:
            return mounts
        # Hand-outs and hand-ins are folders inside the home, by the same last sign-in.
        try:
            classwork = yield self.classwork.mounts_for(desktop, session.owner, seen.role, seen.groups)
        except ContainerEngineUnavailable as e:
            yield self._requeue(session, e)
            return None
        except HomeVolumeFailed as e:
            yield self._fail(session, ENGINE_REFUSED,
                             N_("Your class folders could not be prepared: {reason}").format(reason=str(e)))
            return None
        return mounts + classwork

    @inlineCallbacks
    def _requeue(
        self, session: DesktopSession, problem: ContainerEngineUnavailable
    ) -> Generator[Deferred[Any], Any, None]:
        """Nothing was created: back to its place in the queue until the engine returns."""
        self.engine.lost(str(problem))
        yield self._store.update_session(session.id, self._clock.seconds(), expect=[STARTING], state=QUEUED)
        self._log.warn("session {session} waits for the container engine: {problem}",
                       session=session.id, problem=str(problem))
        self.watch.changed([session.id])

    def watch_until_ready(self, session: DesktopSession) -> None:
        """Wait in the background for a starting session with a container (adopted, say)."""
        self._work(session, self._wait_until_ready(session))

    def working_on(self, session_id: str) -> bool:
        """Whether this process is creating or waiting for this session's container."""
        return session_id in self._working

    @inlineCallbacks
    def _wait_until_ready(self, session: DesktopSession) -> Generator[Deferred[Any], Any, None]:
        deadline = self._clock.seconds() + self._start_timeout
        backend = self.backend_of(session)
        probes = 0
        while True:
            current = yield self._store.get_session(session.id)
            if current is None or current.state != STARTING:
                return  # stopped meanwhile; the stop removes the container
            if backend is not None and (yield self._probe(backend)):
                now = self._clock.seconds()
                ready = yield self._store.update_session(
                    session.id, now, expect=[STARTING], state=READY, ready_at=now, last_connected=now,
                )
                if ready is not None:
                    self._metrics.start_ready(session.desktop, now - session.created)
                    self._log.info("session {session} is ready after {elapsed:.1f}s",
                                   session=session.id, elapsed=now - session.created)
                    self.watch.changed([session.id])
                    # It no longer counts as starting: the next queued start may begin.
                    yield self.drain()
                return
            # Not answering yet: is the container still there at all?
            problem = None
            if session.container_id and (probes % 4 == 3 or self._clock.seconds() >= deadline):
                try:
                    info = yield self.provisioner.inspect(session.container_id)
                except ContainerEngineUnavailable as e:
                    info, problem = None, str(e)
                if info is None and problem is None:
                    yield self._fail(session, CRASHED, N_("The desktop's container disappeared while starting."))
                    return
                if info is not None and not info.running:
                    logs = yield self.provisioner.logs_tail(info.container_id, 5)
                    reason = info.problem or N_("the container stopped ({status})").format(status=info.status)
                    if logs.strip():
                        reason += ": " + " | ".join(line for line in logs.strip().splitlines()[-3:])
                    failure = OUT_OF_MEMORY if info.oom_killed else CRASHED
                    yield self._fail(session, failure,
                                     N_("The desktop stopped while starting: {reason}").format(reason=reason))
                    return
            if self._clock.seconds() >= deadline:
                yield self._fail(
                    session, NOT_READY,
                    N_("The desktop did not become ready within {seconds} seconds.").format(
                        seconds=round(self._start_timeout)),
                    problem,
                )
                return
            interval = PROBE_INTERVALS[probes] if probes < len(PROBE_INTERVALS) else PROBE_INTERVAL
            probes += 1
            yield deferLater(self._clock, interval, lambda: None)

    @inlineCallbacks
    def _fail(
        self, session: DesktopSession, failure: str, reason: str, detail: str | None = None
    ) -> Generator[Deferred[Any], Any, None]:
        """Mark a starting session failed with why (a reasons.FAILURES code) and remove its container."""
        failed = yield self._store.update_session(
            session.id, self._clock.seconds(), expect=[STARTING], state=FAILED, reason=reason,
            end_reason=START_FAILED, failure=failure,
        )
        if failed is None:
            return
        self._log.warn("session {session} failed to start: {reason}", session=session.id, reason=detail or reason)
        yield self._audit(session.owner, "start-failed", session.id, detail or reason)
        current = yield self._store.get_session(session.id)
        if current is not None and current.container_id:
            yield self.remove_quietly(current.container_id)
        self.watch.changed([session.id])
        yield self.drain()
