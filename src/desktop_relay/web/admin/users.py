"""/api/admin/users: the people who have signed in (name, groups and role as of their last
sign-in), one with their sessions, signing one out everywhere, and their homes (listing and
deleting one)."""

from __future__ import annotations

import re
from collections.abc import Generator
from typing import Any

from klein import Klein
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from ...homes import home_volume_name
from ...homes.interface import HomeVolumeFailed, HomeVolumeInUse
from ...i18n import N_
from ...lifecycle import DesktopSessions
from ...relay.bridge import CLOSE_SIGNED_OUT
from ...store import SeenUser, SQLiteStore
from ..homes import home_view, sessions_holding
from ..responses import Problem, json_response
from . import add_problem_handlers
from .auth import AdminAuth
from .paging import page, page_request, query_parameters
from .sessions import Bridges, admin_views

# How many of a user's sessions their detail shows; /api/admin/sessions?user=ID pages through all.
USER_SESSIONS = 100
# A home's key as home_key makes it (a family or d-<desktop>: config NAMEs), so that a key from a
# URL can only ever name one of the user's homes.
_HOME_KEY = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


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

    @app.route("/<user_id>/homes", methods=["GET"])
    @inlineCallbacks
    def list_homes(self, request: IRequest, user_id: str) -> Generator[Deferred[Any], Any, bytes]:
        yield self._auth.caller(request)
        query_parameters(request, ())
        homes = yield self._store.homes_of(user_id)
        user = yield self._store.seen_user(user_id)
        if user is None and not homes:
            raise _no_such_user()
        owned = yield self._store.sessions_of(user_id)
        items = []
        for home in homes:
            view = home_view(home, self._sessions)
            view["volume"] = home.volume
            view["used_by"] = sessions_holding(home.key, owned, self._sessions)
            items.append(view)
        return json_response(request, {"user": user_id, "items": items})

    @app.route("/<user_id>/homes/<key>", methods=["DELETE"])
    @inlineCallbacks
    def delete_home(self, request: IRequest, user_id: str, key: str) -> Generator[Deferred[Any], Any, bytes]:
        caller = yield self._auth.writer(request)
        query_parameters(request, ())
        volumes = self._sessions.homes
        if volumes is None or not _HOME_KEY.match(key):
            raise _no_such_home(key)
        holding = sessions_holding(key, (yield self._store.sessions_of(user_id)), self._sessions)
        if holding:
            # The engine would refuse too, but not for a start that is about to create its container.
            raise Problem(409, "home-in-use", N_("Home in use"),
                          N_("A desktop of this user runs with this home ({sessions}): stop it first."),
                          values={"sessions": ", ".join(holding)})
        volume = home_volume_name(self._sessions.instance, key, user_id)
        try:
            removed = yield volumes.remove(volume)
        except HomeVolumeInUse as e:
            raise Problem(409, "home-in-use", N_("Home in use"),
                          N_("A container still uses this home: {error}"), values={"error": str(e)}) from None
        except HomeVolumeFailed as e:
            raise Problem(502, "home-not-removed", N_("Home not removed"),
                          N_("The container engine did not remove this home: {error}"),
                          values={"error": str(e)}) from None
        known = any(h.volume == volume for h in (yield self._store.homes_of(user_id)))
        if not removed and not known:
            raise _no_such_home(key)
        yield self._store.forget_home(volume)
        yield self._store.audit(self._sessions.now(), caller.name, "home.delete", user_id, f"{key} ({volume})")
        self._log.info("home {key} of {user} deleted by {actor}: volume {volume}",
                       key=key, user=user_id, actor=caller.name, volume=volume)
        return json_response(request, {"user": user_id, "key": key, "volume": volume})


def _no_such_home(key: str) -> Problem:
    return Problem(404, "no-such-home", N_("No such home"), N_("This user has no home {key}."),
                   values={"key": repr(key)})


def _no_such_user() -> Problem:
    return Problem(404, "no-such-user", N_("No such user"), N_("Nobody with this id has signed in here."))
