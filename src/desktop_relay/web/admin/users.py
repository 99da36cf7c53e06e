"""/api/admin/users: the people who have signed in (name, groups and role as of their last
sign-in), one with their sessions, and signing one out everywhere."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from klein import Klein
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from ...i18n import N_
from ...lifecycle import DesktopSessions
from ...relay.bridge import CLOSE_SIGNED_OUT
from ...store import SeenUser, SQLiteStore
from ..responses import Problem, json_response
from . import add_problem_handlers
from .auth import AdminAuth
from .paging import page, page_request, query_parameters
from .sessions import Bridges, admin_views

# How many of a user's sessions their detail shows; /api/admin/sessions?user=ID pages through all.
USER_SESSIONS = 100


def user_view(user: SeenUser) -> dict[str, Any]:
    """A user as the admin API shows them."""
    return {
        "id": user.user_id,
        "name": user.display_name,
        "groups": sorted(user.groups),
        "role": user.role,
        "first_seen": user.first_seen,
        "last_sign_in": user.last_sign_in,
    }


class UsersAdmin:
    """Klein routes of /api/admin/users."""

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
    def list_users(self, request: IRequest) -> Generator[Deferred[Any], Any, bytes]:
        yield self._auth.caller(request)
        asked = page_request(query_parameters(request, ()), (float, str))
        found = yield self._store.seen_users(asked.limit + 1, asked.after)
        return json_response(request, page(found, asked.limit, key=lambda u: (u.last_sign_in, u.user_id),
                                           view=user_view))

    @app.route("/<user_id>", methods=["GET"])
    @inlineCallbacks
    def get_user(self, request: IRequest, user_id: str) -> Generator[Deferred[Any], Any, bytes]:
        yield self._auth.caller(request)
        query_parameters(request, ())
        user = yield self._store.seen_user(user_id)
        sessions = yield self._store.sessions_of(user_id)
        if user is None and not sessions:
            raise _no_such_user()
        positions = yield self._store.queue_positions()
        # Sessions from before users were recorded have an owner nobody saw sign in.
        view: dict[str, Any] = user_view(user) if user is not None else {
            "id": user_id, "name": None, "groups": None, "role": None, "first_seen": None, "last_sign_in": None,
        }
        view["sessions"] = admin_views(sessions[:USER_SESSIONS], self._sessions, self._bridges, positions)
        return json_response(request, view)

    @app.route("/<user_id>/sign-out", methods=["POST"])
    @inlineCallbacks
    def sign_out(self, request: IRequest, user_id: str) -> Generator[Deferred[Any], Any, bytes]:
        caller = yield self._auth.writer(request)
        query_parameters(request, ())
        user = yield self._store.seen_user(user_id)
        ended = yield self._store.delete_web_sessions_of(user_id)
        closed = self._bridges.close_user(user_id, CLOSE_SIGNED_OUT, "signed out by an administrator")
        if user is None and ended == 0 and closed == 0:
            raise _no_such_user()
        yield self._store.audit(self._sessions.now(), caller.name, "admin-sign-out", user_id,
                                f"{ended} web session(s) ended, {closed} desktop connection(s) closed")
        self._log.info("{user} signed out everywhere by {actor}: {ended} web session(s), {closed} connection(s)",
                       user=user_id, actor=caller.name, ended=ended, closed=closed)
        return json_response(request, {"user": user_id, "web_sessions_ended": ended, "connections_closed": closed})


def _no_such_user() -> Problem:
    return Problem(404, "no-such-user", N_("No such user"), N_("Nobody with this id has signed in here."))
