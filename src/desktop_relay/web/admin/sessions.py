"""/api/admin/sessions: every user's desktop sessions, filtered and paged; one in detail with its
live connections; stopping one, or all of a desktop, a group or a user."""

from __future__ import annotations

from collections.abc import Collection, Generator, Iterable
from typing import Any, Protocol

from klein import Klein
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from ...engine.interface import ContainerEngineUnavailable
from ...i18n import N_
from ...lifecycle import DesktopSessions
from ...lifecycle.reasons import ADMIN
from ...store import (
    FAILED,
    QUEUED,
    READY,
    STARTING,
    STOPPED,
    STOPPING,
    DesktopSession,
    SessionFilter,
    SQLiteStore,
)
from ..responses import Problem, json_response, read_json_body
from . import add_problem_handlers
from .auth import AdminAuth, AdminCaller
from .paging import number_parameter, page, page_request, query_parameters, time_parameter

#: The words the session's user sees on their desktop's page.
STOPPED_BY_ADMIN = N_("Stopped by an administrator.")
STATES = (QUEUED, STARTING, READY, STOPPING, STOPPED, FAILED)
# What an admin can stop: what a user can (a stopping one is on its way already).
STOPPABLE = (QUEUED, STARTING, READY)
FILTERS = ("user", "desktop", "state", "started_before", "started_after", "idle_longer_than")
STOP_MANY_BY = ("desktop", "group", "user")


class BridgeCounters(Protocol):
    """What the admin API reads of one open WebSocket bridge."""

    bytes_to_browser: int
    bytes_to_container: int


class Bridges(Protocol):
    """The open WebSocket bridges (relay/bridge/'s DesktopBridgeFactory)."""

    def bridges_for_session(self, session_id: str) -> Collection[BridgeCounters]: ...

    def close_user(self, user_id: str, code: int, reason: str) -> int: ...


def admin_session_view(
    session: DesktopSession, sessions: DesktopSessions, bridges: Bridges, position: int | None = None
) -> dict[str, Any]:
    """A session as an admin sees it: everything about it but its container's password and port."""
    desktop = sessions.desktop(session.desktop)
    open_bridges = bridges.bridges_for_session(session.id)
    inputs = [t for t in (session.last_input, sessions.activity.last_input(session.id)) if t is not None]
    return {
        "id": session.id,
        "owner": session.owner,
        "desktop": session.desktop,
        "state": session.state,
        "position": position if session.state == QUEUED else None,
        "reason": session.reason,
        "end_reason": session.end_reason,
        "container_id": session.container_id,
        # As configured now; None for a desktop no longer offered.
        "image": desktop.image if desktop else None,
        "created": session.created,
        "updated": session.updated,
        "ready_at": session.ready_at,
        "last_input": max(inputs) if inputs else None,
        "connected_browsers": len(open_bridges),
        "bytes_to_browser": sum(b.bytes_to_browser for b in open_bridges),
        "bytes_to_container": sum(b.bytes_to_container for b in open_bridges),
    }


class SessionsAdmin:
    """Klein routes of /api/admin/sessions."""

    app = Klein()
    add_problem_handlers(app)
    _log = Logger()

    def __init__(self, auth: AdminAuth, store: SQLiteStore, sessions: DesktopSessions, bridges: Bridges) -> None:
        self._auth = auth
        self._store = store
        self._sessions = sessions
        self._bridges = bridges

    @app.route("/", methods=["GET"])
    @inlineCallbacks
    def list_sessions(self, request: IRequest) -> Generator[Deferred[Any], Any, bytes]:
        yield self._auth.caller(request)
        parameters = query_parameters(request, FILTERS)
        state = parameters.get("state")
        if state is not None and state not in STATES:
            raise Problem(400, "invalid-parameter", N_("Invalid parameter"),
                          N_("state must be one of {states}."), values={"states": ", ".join(STATES)},
                          parameter="state")
        idle = number_parameter(parameters, "idle_longer_than")
        wanted = SessionFilter(
            owner=parameters.get("user"), desktop=parameters.get("desktop"), state=state,
            created_before=time_parameter(parameters, "started_before"),
            created_after=time_parameter(parameters, "started_after"),
            idle_since=None if idle is None else self._sessions.now() - idle,
        )
        asked = page_request(parameters, (float, str))
        if idle is not None:
            # The last inputs in memory are newer than the store's.
            yield self._sessions.flush_activity()
        found = yield self._store.find_sessions(wanted, asked.limit + 1, asked.after)
        positions = yield self._store.queue_positions()
        return json_response(request, page(
            found, asked.limit, key=lambda s: (s.created, s.id),
            view=lambda s: admin_session_view(s, self._sessions, self._bridges, positions.get(s.id)),
        ))

    @app.route("/<session_id>", methods=["GET"])
    @inlineCallbacks
    def get_session(self, request: IRequest, session_id: str) -> Generator[Deferred[Any], Any, bytes]:
        yield self._auth.caller(request)
        query_parameters(request, ())
        session = yield self._session(session_id)
        return json_response(request, (yield self._view(session)))

    @app.route("/<session_id>", methods=["DELETE"])
    @inlineCallbacks
    def stop_session(self, request: IRequest, session_id: str) -> Generator[Deferred[Any], Any, bytes]:
        caller = yield self._auth.writer(request)
        query_parameters(request, ())
        session = yield self._session(session_id)
        if session.state not in STOPPABLE:
            raise _already_ended(session)
        try:
            stopped = yield self._sessions.stop(session, caller.name, ADMIN, STOPPED_BY_ADMIN)
        except ContainerEngineUnavailable:
            # It stays stopping; reconcile removes the container once the engine is back.
            yield self._audit(caller, "admin-stop", session.id, f"owner {session.owner}; left stopping")
            raise
        if stopped.end_reason != ADMIN:
            # It ended by itself (or its owner stopped it) while we asked.
            raise _already_ended(stopped)
        yield self._audit(caller, "admin-stop", session.id, f"owner {session.owner}, desktop {session.desktop}")
        self._log.info("session {session} of {user} stopped by {actor}", session=session.id,
                       user=session.owner, actor=caller.name)
        return json_response(request, (yield self._view(stopped)))

    @app.route("/stop", methods=["POST"])
    @inlineCallbacks
    def stop_many(self, request: IRequest) -> Generator[Deferred[Any], Any, bytes]:
        caller = yield self._auth.writer(request)
        query_parameters(request, ())
        by, name = _stop_many_body(read_json_body(request))
        active = yield self._store.sessions_in(*STOPPABLE)
        if by == "group":
            owners = {user.user_id for user in (yield self._store.members_seen(name))}
            chosen = [s for s in active if s.owner in owners]
        else:
            chosen = [s for s in active if (s.desktop if by == "desktop" else s.owner) == name]
        outcomes = yield gatherResults([self._stop_quietly(caller, s) for s in chosen], consumeErrors=True)
        stopped = [s.id for s, done in zip(chosen, outcomes, strict=True) if done is True]
        stopping = [s.id for s, done in zip(chosen, outcomes, strict=True) if done is None]
        yield self._audit(caller, "admin-stop-many", f"{by}:{name}",
                          f"stopped {len(stopped)}" + (f", left stopping {len(stopping)}" if stopping else "")
                          + "".join(f" {sid}" for sid in stopped + stopping))
        self._log.info("{actor} stopped {count} session(s) of {by} {name}",
                       actor=caller.name, count=len(stopped), by=by, name=name)
        return json_response(request, {"stopped": stopped, "stopping": stopping})

    @inlineCallbacks
    def _stop_quietly(self, caller: AdminCaller, session: DesktopSession) -> Generator[Deferred[Any], Any, bool | None]:
        """Stop one of many: True when it stopped, None when the engine left it stopping,
        False when it had ended meanwhile."""
        try:
            stopped = yield self._sessions.stop(session, caller.name, ADMIN, STOPPED_BY_ADMIN)
        except ContainerEngineUnavailable as e:
            self._log.warn("session {session} left stopping: {problem}", session=session.id, problem=str(e))
            return None
        return stopped.end_reason == ADMIN and stopped.state == STOPPED

    @inlineCallbacks
    def _session(self, session_id: str) -> Generator[Deferred[Any], Any, DesktopSession]:
        session = yield self._store.get_session(session_id)
        if session is None:
            raise Problem(404, "no-such-session", N_("No such desktop session"))
        return session

    @inlineCallbacks
    def _view(self, session: DesktopSession) -> Generator[Deferred[Any], Any, dict[str, Any]]:
        position = None
        if session.state == QUEUED:
            position = (yield self._store.queue_positions()).get(session.id)
        return admin_session_view(session, self._sessions, self._bridges, position)

    def _audit(self, caller: AdminCaller, action: str, target: str, detail: str) -> Deferred[None]:
        return self._store.audit(self._sessions.now(), caller.name, action, target, detail)


def admin_views(
    found: Iterable[DesktopSession], sessions: DesktopSessions, bridges: Bridges, positions: dict[str, int]
) -> list[dict[str, Any]]:
    """Admin views of several sessions."""
    return [admin_session_view(s, sessions, bridges, positions.get(s.id)) for s in found]


def _already_ended(session: DesktopSession) -> Problem:
    return Problem(409, "already-ended", N_("Session already ended"),
                   N_("The session is {state} already; nothing was changed."), values={"state": session.state},
                   state=session.state)


def _stop_many_body(body: Any) -> tuple[str, str]:
    if (not isinstance(body, dict) or len(body) != 1 or next(iter(body)) not in STOP_MANY_BY
            or not isinstance(next(iter(body.values())), str) or not next(iter(body.values()))):
        raise Problem(422, "invalid-request", N_("Invalid request"),
                      N_('The body must be one of {"desktop": "NAME"}, {"group": "GROUP"} or {"user": "USER ID"}.'))
    ((by, name),) = body.items()
    return by, name
