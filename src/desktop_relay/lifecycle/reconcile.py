"""Reconcile: Docker's labelled containers are the truth the store is brought back to, at start,
after the engine returns, and periodically as a safety net behind the event stream. A pooled
container's label names its pool id: the store says which session, if any, claimed it."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

from ..engine.interface import ContainerInfo
from ..i18n import N_
from ..store import QUEUED, STARTING, STOPPING, DesktopSession, SQLiteStore
from .pool import WarmPool
from .reasons import ENGINE_LOST, exit_reason
from .sessions import DesktopSessions

_log = Logger()

# A container that stopped this long before the engine was seen to go is not blamed on it.
_ENGINE_LOSS_MARGIN = 5.0

ENGINE_LOST_WORDS = N_("The desktop server restarted and this desktop was lost. Start it again.")


def ending_of(info: ContainerInfo | None, engine_lost_at: float | None) -> tuple[str, str]:
    """(end reason, words) for a session whose container is gone or no longer running."""
    if engine_lost_at is not None and (
        info is None or info.finished_at is None or info.finished_at >= engine_lost_at - _ENGINE_LOSS_MARGIN
    ):
        return ENGINE_LOST, ENGINE_LOST_WORDS
    if info is None:
        return exit_reason(None, False)
    return exit_reason(info.exit_code, info.oom_killed)


@inlineCallbacks
def reconcile(
    sessions: DesktopSessions, store: SQLiteStore, pool: WarmPool | None = None
) -> Generator[Deferred[Any], Any, None]:
    """Bring the store in line with the containers Docker reports for this instance."""
    containers: list[ContainerInfo] = yield sessions.provisioner.list_managed(sessions.instance)
    claims: dict[str, str] = (yield store.pool_claims()) if pool is not None else {}
    by_session = {claims.get(c.session_id, c.session_id) if c.pooled else c.session_id: c for c in containers}
    lost_at = sessions.engine.lost_at
    for session in (yield store.active_sessions()):
        info = by_session.pop(session.id, None)
        if session.state == QUEUED:
            if info is not None:
                # A create the engine carried out after the relay stopped waiting for it.
                yield sessions.remove_quietly(info.container_id)
        elif session.state == STOPPING:
            yield sessions.finish_stop(session)
        elif info is None:
            if session.state == STARTING and session.container_id is None:
                if not sessions.working_on(session.id):
                    yield _requeue(store, sessions, session)
            else:
                yield sessions.end(session, *ending_of(None, lost_at))
        elif session.state == STARTING and sessions.working_on(session.id):
            pass  # between this process's create and start: its start judges the container
        elif session.state == STARTING and info.status == "created":
            # The relay stopped (crashed, say) between creating the container and starting it:
            # nothing ran, so the start goes back to its place in the queue, without the husk.
            yield sessions.remove_quietly(info.container_id)
            yield _requeue(store, sessions, session)
        elif not info.running:
            yield sessions.end(session, *ending_of(info, lost_at))
        else:
            if info.host_port != session.host_port or info.container_id != session.container_id:
                session = yield store.update_session(
                    session.id, sessions.now(), container_id=info.container_id, host_port=info.host_port
                )
            if session.state == STARTING and not sessions.working_on(session.id):
                sessions.watch_until_ready(session)
    pooled = [info for info in by_session.values() if info.pooled]
    for info in by_session.values():
        if not info.pooled:
            yield _adopt_or_remove(sessions, store, info)
    if pool is not None:
        yield pool.reconcile(pooled)
    else:
        for info in pooled:
            yield sessions.remove_quietly(info.container_id)
    sessions.engine.settled()
    yield sessions.drain()


@inlineCallbacks
def _requeue(
    store: SQLiteStore, sessions: DesktopSessions, session: DesktopSession
) -> Generator[Deferred[Any], Any, None]:
    # The relay stopped (crashed, say) between taking the start and creating its container:
    # back to its place in the queue.
    yield store.update_session(session.id, sessions.now(), expect=[STARTING], state=QUEUED)
    _log.info("session {session} goes back to the queue: its start was interrupted", session=session.id)


@inlineCallbacks
def _adopt_or_remove(
    sessions: DesktopSessions, store: SQLiteStore, info: ContainerInfo
) -> Generator[Deferred[Any], Any, None]:
    """A labelled container with no active session: adopt it if it is a lost session, else remove it."""
    known = yield store.get_session(info.session_id)
    lost = known is None and bool(info.session_id) and bool(info.vnc_password)
    if not lost or not info.running or sessions.desktop(info.desktop) is None:
        _log.info("removing container {container} of ended session {session}",
                  container=info.container_id[:12], session=info.session_id or "?")
        yield sessions.remove_quietly(info.container_id)
        return
    # The store lost this session (e.g. a restored or deleted database): Docker's labels
    # and environment say whose it is, so the user keeps their desktop.
    now = sessions.now()
    desktop = sessions.desktop(info.desktop)
    assert desktop is not None and info.vnc_password is not None
    session = DesktopSession(
        id=info.session_id, owner=info.owner, desktop=info.desktop, state=STARTING,
        reason=None, container_id=info.container_id, host_port=info.host_port, vnc_password=info.vnc_password,
        created=now, updated=now, memory=desktop.memory_bytes,
    )
    yield store.add_session(session)
    _log.info("adopted container {container} as session {session} of {user}",
              container=info.container_id[:12], session=session.id, user=session.owner)
    sessions.watch_until_ready(session)
