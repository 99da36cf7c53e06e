"""The engine's event stream, applied: a container that dies ends its session within a second,
and a container that appears for a session that is not starting is removed at once. A pooled
container is the pool's until a session claims it (its label names the pool id, the store the
session)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from ..engine.interface import ContainerEngineUnavailable, ContainerEvent
from ..i18n import N_
from ..store import READY, STARTING, DesktopSession, SQLiteStore
from .pool import WarmPool
from .reasons import CRASHED, OUT_OF_MEMORY, START_FAILED, exit_reason
from .sessions import DesktopSessions

# A container told to stop by someone other than the relay (an admin's `docker stop`, or the
# engine stopping everything as it shuts down) dies cleanly about a second before the engine's
# event stream ends. Its session waits this long to learn which it was, so a desktop lost with
# the engine ends engine-lost, not "stopped by itself (exit code 0)".
SHUTDOWN_GRACE = 3.0
# The exit code of a SIGKILLed process: `docker kill`, which ends the session at once.
_SIGKILLED = 137


class EventHandler:
    """Turns container events into session ends and orphan removals."""

    _log = Logger()

    def __init__(
        self, sessions: DesktopSessions, store: SQLiteStore, clock: IReactorTime,
        shutdown_grace: float = SHUTDOWN_GRACE, pool: WarmPool | None = None,
    ) -> None:
        self._sessions = sessions
        self._pool = pool
        self._store = store
        self._clock = clock
        self._shutdown_grace = shutdown_grace
        self._pending: set[Deferred[None]] = set()
        # Containers someone sent a signal (the engine's "kill" event) that have not died yet.
        self._signalled: set[str] = set()

    def __call__(self, event: ContainerEvent) -> None:
        """on_event for the provisioner's follower (reactor thread)."""
        if event.action == "kill":
            self._signalled.add(event.container_id)
            return
        if event.action == "destroy":
            self._signalled.discard(event.container_id)
            return
        if event.action == "die":
            d = self._died(event)
        elif event.action in ("create", "start"):
            d = self._appeared(event)
        else:
            return
        self._pending.add(d)
        d.addErrback(lambda f: self._log.failure("handling {action} of container {container}", f,
                                                 action=event.action, container=event.container_id[:12]))
        d.addBoth(lambda _: self._pending.discard(d))

    @inlineCallbacks
    def _owner(self, event: ContainerEvent) -> Generator[Deferred[Any], Any, tuple[DesktopSession | None, bool]]:
        """(the session the container belongs to, whether it waits unclaimed in the pool)."""
        session = yield self._store.get_session(event.session_id)
        if session is not None or self._pool is None:
            return (session, False)
        entry = yield self._store.pool_entry(event.session_id)
        if entry is None:
            return (None, False)
        if entry.session_id is None:
            return (None, True)
        return ((yield self._store.get_session(entry.session_id)), False)

    @inlineCallbacks
    def _died(self, event: ContainerEvent) -> Generator[Deferred[Any], Any, None]:
        signalled = event.container_id in self._signalled
        self._signalled.discard(event.container_id)
        session, pooled = yield self._owner(event)
        if pooled and self._pool is not None:
            yield self._pool.lost(event.session_id, event.container_id)
            return
        if session is None or session.state not in (STARTING, READY):
            return  # ours to stop, or already ended
        if session.container_id not in (None, event.container_id):
            return  # an older container of the session
        try:
            info = yield self._sessions.provisioner.inspect(event.container_id)
        except ContainerEngineUnavailable:
            info = None
        oom = info.oom_killed if info is not None else False
        code = info.exit_code if info is not None and info.exit_code is not None else event.exit_code
        if signalled and code != _SIGKILLED and not oom:
            yield deferLater(self._clock, self._shutdown_grace, lambda: None)
            engine = self._sessions.engine
            if not engine.available or engine.lost_at is not None:
                # Stopped with the engine: reconcile ends it (engine-lost) once the engine is back.
                self._log.info("container {container} of session {session} stopped as the engine went away",
                               container=event.container_id[:12], session=session.id)
                return
            session = yield self._store.get_session(session.id)
            if session is None or session.state not in (STARTING, READY):
                return
        if session.state == STARTING:
            # Died before it ever answered: the start failed, and its last words say why.
            reason = (info.problem if info is not None and info.problem else None) or exit_reason(code, oom)[1]
            try:
                logs = yield self._sessions.provisioner.logs_tail(event.container_id, 5)
            except ContainerEngineUnavailable:
                logs = ""
            if logs.strip():
                reason += ": " + " | ".join(line for line in logs.strip().splitlines()[-3:])
            words = N_("The desktop stopped while starting: {reason}").format(reason=reason)
            yield self._sessions.end(session, START_FAILED, words, OUT_OF_MEMORY if oom else CRASHED)
            return
        yield self._sessions.end(session, *exit_reason(code, oom))

    @inlineCallbacks
    def _appeared(self, event: ContainerEvent) -> Generator[Deferred[Any], Any, None]:
        session, pooled = yield self._owner(event)
        if pooled:
            return  # the pool is starting it
        if session is not None and session.state == STARTING and session.container_id in (None, event.container_id):
            return  # the one this relay is creating
        if session is not None and session.state == READY and session.container_id == event.container_id:
            return
        self._log.warn(
            "removing container {container}: it appeared for session {session}, which is {state}",
            container=event.container_id[:12], session=event.session_id or "?",
            state=session.state if session is not None else "unknown",
        )
        yield self._sessions.remove_quietly(event.container_id)

    def pending(self) -> list[Deferred[None]]:
        """Event handling in progress (for orderly shutdown and tests)."""
        return list(self._pending)
