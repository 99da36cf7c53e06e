"""Desktop session lifecycle: start, wait until ready, stop, and reconcile the store with Docker.

The rules that keep store and engine in step live here: a session row exists before its
container, a container never outlives its session, a failed start leaves a `failed` row with
its reason and no container, and on start-up (and periodically) Docker's labelled containers
are the truth the store is brought back to.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Generator, Mapping
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from .auth import Identity
from .backend import Backend
from .config import DesktopType
from .containers import (
    ContainerEngineUnavailable,
    ContainerInfo,
    ContainerSpec,
    ContainerStartFailed,
    IContainerProvisioner,
)
from .store import ACTIVE_STATES, FAILED, READY, STARTING, STOPPED, STOPPING, DesktopSession, SQLiteStore

# How often a starting container is asked whether it is ready yet.
PROBE_INTERVAL = 0.5


class UnknownDesktop(Exception):
    """No [desktop:NAME] of that name is configured."""


class DesktopNotAllowed(Exception):
    """The user's groups do not admit them to that desktop."""


class SessionLimitReached(Exception):
    """The user already has as many active sessions as allowed."""


def new_session_id() -> str:
    """A random, unguessable session id: 160 bits, URL-safe."""
    return secrets.token_urlsafe(20)


class DesktopSessions:
    """Starts and stops users' desktop sessions and keeps the store true to the engine."""

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
        on_session_ended: Callable[[str], object] = lambda session_id: None,
    ) -> None:
        self._store = store
        self._provisioner = provisioner
        self._probe = probe
        self._clock = clock
        self._desktops = desktops
        self._instance = instance
        self._max_per_user = max_per_user
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        # Told when a session stops or fails, so open desktop connections can be closed.
        self._on_session_ended = on_session_ended
        # Sessions whose readiness this process is waiting for: reconcile must not start a
        # second wait for them.
        self._waiting: dict[str, Deferred[None]] = {}

    def desktops_for(self, identity: Identity) -> list[DesktopType]:
        """The desktops this user may start, in configuration order."""
        return [d for d in self._desktops.values() if d.allows(identity.user_id, identity.groups)]

    def desktop(self, name: str) -> DesktopType | None:
        """A configured desktop type by name."""
        return self._desktops.get(name)

    def backend_of(self, session: DesktopSession) -> Backend | None:
        """Where a ready session's container listens, or None when it has no port yet."""
        if session.host_port is None:
            return None
        return Backend("127.0.0.1", session.host_port, session.vnc_password)

    @inlineCallbacks
    def start(
        self, identity: Identity, desktop_name: str
    ) -> Generator[Deferred[Any], Any, tuple[DesktopSession, bool]]:
        """Start a session of a desktop for a user; returns (session, created).

        An active session of the same desktop is returned instead of starting a second one
        (created is then False). The container is created before this returns; readiness is
        awaited in the background.
        """
        desktop = self._desktops.get(desktop_name)
        if desktop is None:
            raise UnknownDesktop(desktop_name)
        if not desktop.allows(identity.user_id, identity.groups):
            raise DesktopNotAllowed(desktop_name)
        sessions = yield self._store.sessions_of(identity.user_id)
        active = [s for s in sessions if s.state in (STARTING, READY)]
        for session in active:
            if session.desktop == desktop_name:
                return (session, False)
        if len([s for s in sessions if s.active]) >= self._max_per_user:
            raise SessionLimitReached(self._max_per_user)

        now = self._clock.seconds()
        session = DesktopSession(
            id=new_session_id(),
            owner=identity.user_id,
            desktop=desktop_name,
            state=STARTING,
            reason=None,
            container_id=None,
            host_port=None,
            vnc_password=secrets.token_urlsafe(24),
            created=now,
            updated=now,
        )
        yield self._store.add_session(session)
        spec = ContainerSpec(session.id, identity.user_id, self._instance, desktop, session.vnc_password)
        try:
            info = yield self._provisioner.start(spec)
        except ContainerEngineUnavailable:
            # Nothing was created: leave no row behind for a request that is answered 503.
            yield self._store.delete_session(session.id)
            raise
        except ContainerStartFailed as e:
            failed = yield self._store.update_session(
                session.id, self._clock.seconds(), state=FAILED, reason=str(e)
            )
            self._log.warn(
                "session {session} of {user} failed to start {desktop}: {reason}",
                session=session.id, user=identity.user_id, desktop=desktop_name, reason=str(e),
            )
            yield self._audit(identity.user_id, "start-failed", session.id, str(e))
            return (failed, True)
        updated = yield self._store.update_session(
            session.id,
            self._clock.seconds(),
            expect=[STARTING],
            container_id=info.container_id,
            host_port=info.host_port,
        )
        if updated is None:
            # Stopped while the engine was creating it: do not leave the container behind.
            yield self._remove_quietly(info.container_id)
            return ((yield self._store.get_session(session.id)), True)
        self._log.info(
            "session {session}: {user} started {desktop} in container {container}",
            session=session.id, user=identity.user_id, desktop=desktop_name,
            container=info.container_id[:12],
        )
        yield self._audit(identity.user_id, "start", session.id, desktop_name)
        self._watch_until_ready(updated)
        return (updated, True)

    def _watch_until_ready(self, session: DesktopSession) -> None:
        if session.id in self._waiting:
            return
        d = self._wait_until_ready(session)
        self._waiting[session.id] = d
        d.addErrback(lambda f: self._log.failure("waiting for session {session}", f, session=session.id))

        def done(_: object) -> None:
            del self._waiting[session.id]

        d.addBoth(done)

    @inlineCallbacks
    def _wait_until_ready(self, session: DesktopSession) -> Generator[Deferred[Any], Any, None]:
        deadline = session.created + self._start_timeout
        backend = self.backend_of(session)
        container_id = session.container_id
        assert container_id is not None  # only sessions with a container are watched
        while True:
            current = yield self._store.get_session(session.id)
            if current is None or current.state != STARTING:
                return  # stopped meanwhile; the stop removes the container
            problem: str | None
            try:
                info = yield self._provisioner.inspect(container_id)
            except ContainerEngineUnavailable as e:
                info, problem = None, str(e)
            else:
                problem = None
            if info is None and problem is None:
                yield self._fail(session, "the container disappeared while starting")
                return
            if info is not None and not info.running:
                logs = yield self._provisioner.logs_tail(info.container_id, 5)
                reason = info.problem or f"the container stopped ({info.status})"
                if logs.strip():
                    reason += ": " + " | ".join(line for line in logs.strip().splitlines()[-3:])
                yield self._fail(session, reason)
                return
            if backend is not None and info is not None and (yield self._probe(backend)):
                ready = yield self._store.update_session(
                    session.id, self._clock.seconds(), expect=[STARTING], state=READY
                )
                if ready is not None:
                    elapsed = self._clock.seconds() - session.created
                    self._log.info(
                        "session {session} is ready after {elapsed:.1f}s", session=session.id, elapsed=elapsed
                    )
                return
            if self._clock.seconds() >= deadline:
                yield self._fail(
                    session,
                    problem or f"the desktop did not become ready within {self._start_timeout:.0f}s",
                )
                return
            yield deferLater(self._clock, PROBE_INTERVAL, lambda: None)

    @inlineCallbacks
    def _fail(self, session: DesktopSession, reason: str) -> Generator[Deferred[Any], Any, None]:
        """Mark a starting session failed and remove its container."""
        failed = yield self._store.update_session(
            session.id, self._clock.seconds(), expect=[STARTING], state=FAILED, reason=reason
        )
        if failed is None:
            return
        self._log.warn("session {session} failed: {reason}", session=session.id, reason=reason)
        yield self._audit(session.owner, "start-failed", session.id, reason)
        if session.container_id:
            yield self._remove_quietly(session.container_id)

    @inlineCallbacks
    def stop(
        self, session: DesktopSession, actor: str, reason: str = "stopped by the user"
    ) -> Generator[Deferred[Any], Any, DesktopSession]:
        """Stop a session: close its connections, remove its container, mark it stopped.

        If the engine is unreachable the session stays `stopping` (and the error propagates);
        reconcile finishes the job once the engine is back.
        """
        stopping = yield self._store.update_session(
            session.id, self._clock.seconds(), expect=ACTIVE_STATES, state=STOPPING, reason=reason
        )
        if stopping is None:
            return (yield self._store.get_session(session.id))
        self._on_session_ended(session.id)
        yield self._audit(actor, "stop", session.id, reason)
        return (yield self._finish_stop(stopping))

    @inlineCallbacks
    def _finish_stop(self, session: DesktopSession) -> Generator[Deferred[Any], Any, DesktopSession]:
        if session.container_id:
            yield self._provisioner.remove(session.container_id, self._stop_timeout)
        stopped = yield self._store.update_session(
            session.id, self._clock.seconds(), expect=[STOPPING], state=STOPPED
        )
        self._log.info("session {session} stopped: {reason}", session=session.id, reason=session.reason)
        return stopped or session

    @inlineCallbacks
    def _remove_quietly(self, container_id: str) -> Generator[Deferred[Any], Any, None]:
        try:
            yield self._provisioner.remove(container_id, self._stop_timeout)
        except ContainerEngineUnavailable as e:
            # Reconcile removes containers whose session is not active once the engine is back.
            self._log.warn("could not remove container {container} now: {problem}",
                           container=container_id[:12], problem=str(e))

    @inlineCallbacks
    def reconcile(self) -> Generator[Deferred[Any], Any, None]:
        """Bring the store in line with the containers Docker reports for this instance."""
        containers: list[ContainerInfo] = yield self._provisioner.list_managed(self._instance)
        by_session = {c.session_id: c for c in containers}
        now = self._clock.seconds()
        for session in (yield self._store.active_sessions()):
            info = by_session.pop(session.id, None)
            if session.state == STOPPING:
                yield self._finish_stop(session)
            elif info is None:
                yield self._end_vanished(session, "the container no longer exists")
            elif not info.running:
                yield self._end_vanished(session, info.problem or f"the container {info.status}")
                yield self._remove_quietly(info.container_id)
            else:
                if info.host_port != session.host_port or info.container_id != session.container_id:
                    session = yield self._store.update_session(
                        session.id, now, container_id=info.container_id, host_port=info.host_port
                    )
                if session.state == STARTING:
                    self._watch_until_ready(session)
        for info in by_session.values():
            yield self._adopt_or_remove(info)

    @inlineCallbacks
    def _end_vanished(self, session: DesktopSession, reason: str) -> Generator[Deferred[Any], Any, None]:
        ended = yield self._store.update_session(
            session.id, self._clock.seconds(), expect=ACTIVE_STATES, state=STOPPED, reason=reason
        )
        if ended is not None:
            self._on_session_ended(session.id)
            self._log.warn("session {session} ended: {reason}", session=session.id, reason=reason)

    @inlineCallbacks
    def _adopt_or_remove(self, info: ContainerInfo) -> Generator[Deferred[Any], Any, None]:
        """A labelled container with no active session: adopt it if it is a lost session, else remove it."""
        known = yield self._store.get_session(info.session_id)
        if known is not None or not info.running or not info.vnc_password or info.desktop not in self._desktops:
            self._log.info(
                "removing container {container} of ended session {session}",
                container=info.container_id[:12], session=info.session_id,
            )
            yield self._remove_quietly(info.container_id)
            return
        # The store lost this session (e.g. a restored or deleted database): Docker's labels
        # and environment say whose it is, so the user keeps their desktop.
        now = self._clock.seconds()
        session = DesktopSession(
            id=info.session_id,
            owner=info.owner,
            desktop=info.desktop,
            state=STARTING,
            reason=None,
            container_id=info.container_id,
            host_port=info.host_port,
            vnc_password=info.vnc_password,
            created=now,
            updated=now,
        )
        yield self._store.add_session(session)
        self._log.info("adopted container {container} as session {session} of {user}",
                       container=info.container_id[:12], session=session.id, user=session.owner)
        self._watch_until_ready(session)

    def _audit(self, actor: str, action: str, target: str, detail: str = "") -> Deferred[None]:
        return self._store.audit(self._clock.seconds(), actor, action, target, detail)

    def waiting(self) -> list[Deferred[None]]:
        """Readiness waits in progress (for orderly shutdown and tests)."""
        return list(self._waiting.values())
