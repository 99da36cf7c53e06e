"""The user JSON API under /api/: who is signed in, desktops a user may start, their desktop
sessions, their homes."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Mapping
from typing import Any
from urllib.parse import urlencode

from klein import Klein
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import Request

from ..engine.interface import ContainerEngineUnavailable
from ..i18n import DEFAULT_LANGUAGE, N_, Language, PluralText, language
from ..lifecycle import (
    DesktopNotAllowed,
    DesktopSessions,
    DoesNotFit,
    QueueFull,
    SessionLimitReached,
    UnknownDesktop,
)
from ..lifecycle.steps import step_of
from ..store import FAILED, QUEUED, READY, STARTING, STOPPED, DesktopSession, HomeRecord, Prestart, SQLiteStore
from ..store.pool import PRESTARTED
from .endings import ending_of
from .guard import RequestGuard, identity_of
from .homes import home_view, session_home
from .openapi import admin_document, user_document
from .responses import (
    Problem,
    handle_problems,
    json_response,
    read_json_body,
    request_language,
)

# The APIs with their own Klein app, each at /api/NAME/: a user's files (web/files.py), a
# teacher's classes and their assignments (web/classes.py), hand-outs and hand-ins
# (web/classwork.py), looking over a pupil's shoulder (web/looks.py).
BRANCHES = ("files", "classes", "classwork", "looks")
# How many past sessions a user sees; older ones stay in the database for the audit trail.
RECENT_SESSIONS = 20
# The longest a long-poll (?wait=) is held open; below the usual proxy timeouts.
LONG_POLL = 25.0
# What Retry-After says when the queue is full.
QUEUE_RETRY_AFTER = 60


def client_url(session_id: str) -> str:
    """The web client's address for a session, with its WebSocket path kept under the prefix,
    for the session page's frame.

    KasmVNC's client changes behaviour when framed (it takes itself for Kasm's own portal): it
    hides its control bar, turns the clipboard off and disconnects after its own idle time (20
    min). show_control_bar makes it behave as it does in a tab of its own; the relay's idle stop,
    with its warning on the session page, decides instead. noVNC ignores both.
    """
    query = urlencode({"path": f"desktop/{session_id}/websockify", "autoconnect": "1",
                       "resize": "remote", "reconnect": "1", "show_control_bar": "1",
                       "idle_disconnect": "100000"})
    return f"/desktop/{session_id}/?{query}"


def session_view(
    session: DesktopSession, sessions: DesktopSessions, position: int | None = None,
    words: Language | None = None, homes: Iterable[HomeRecord] = (), prestart: Prestart | None = None,
) -> dict[str, Any]:
    """A desktop session as the browser may see it (no container password, no host port), its
    reason in the reader's language (words; English without), its home's usage from the
    owner's `homes`, and `prestart` when it was started for the user before a lesson."""
    words = words or language(DEFAULT_LANGUAGE)
    desktop = sessions.desktop(session.desktop)
    timing = sessions.timing_of(session)
    step, step_since = step_of(session)
    ended = session.state in (STOPPED, FAILED)
    view: dict[str, Any] = {
        "id": session.id,
        "desktop": session.desktop,
        "title": desktop.title if desktop else session.desktop,
        "state": session.state,
        # Stored in English (for the audit and admins); shown in the reader's language.
        "reason": words.stored(session.reason),
        "end_reason": session.end_reason,
        "failure": session.failure,
        # What happened and what to do, in the user's words, once it has ended.
        "ending": ending_of(session.end_reason, session.failure).view(words) if ended else None,
        "step": step,
        "step_since": step_since,
        "created": session.created,
        "updated": session.updated,
        "ready_at": session.ready_at,
        "idle_deadline": timing.idle_deadline if timing else None,
        "lifetime_deadline": timing.lifetime_deadline if timing else None,
        "warning": {"reason": timing.warning[0], "at": timing.warning[1]} if timing and timing.warning else None,
        "engine": "ok" if sessions.engine.available else "unreachable",
        # The server's clock when the view was made, for countdowns (a long-poll's Date header is
        # as old as its wait).
        "now": sessions.now(),
        "url": f"/desktop/{session.id}/",
        "client_url": client_url(session.id),
        # Usage against the quota, for the page's warning (docs/homes.md).
        "home": session_home(session, sessions, homes),
        "prestart": {"lesson": prestart.lesson, "claim_deadline": prestart.claim_deadline,
                     "opened": prestart.outcome != PRESTARTED} if prestart is not None else None,
    }
    if session.state == QUEUED:
        view["position"] = position
    if session.state == READY and not sessions.engine.available:
        # Its container cannot be confirmed while the engine is away: not shown as ready.
        view["state"] = "interrupted"
        view["reason"] = words.gettext(N_("The desktop server is not answering; waiting for it to come back."))
    return view


def _engine_down(error: ContainerEngineUnavailable) -> Problem:
    return Problem(503, "container-engine-unavailable", N_("Desktops are unavailable right now"),
                   N_("The server cannot reach its container engine. Try again in a minute."))


class UserAPI:
    """Klein routes for a signed-in user's own desktops and sessions."""

    app = Klein()
    _log = Logger()

    def __init__(
        self, store: SQLiteStore, sessions: DesktopSessions, guard: RequestGuard,
        admin_caller: Callable[[IRequest], Deferred[Any]] | None = None,
        branches: Mapping[str, IResource] | None = None,
        looks_of: Callable[[str], dict[str, Any]] | None = None,
    ) -> None:
        self._store = store
        # Who is looking at a session (web/looks.py), for the owner's "being watched" line.
        self._looks_of = looks_of
        self._sessions = sessions
        self._guard = guard
        # AdminAuth.caller: fires for a caller who may use the admin API, fails for anyone else.
        self._admin_caller = admin_caller
        # The APIs of their own under /api/NAME/ (BRANCHES): files (web/files.py), ...
        self._branches = dict(branches or {})
        unknown = set(self._branches) - set(BRANCHES)
        if unknown:
            raise ValueError(f"no route for API branches {sorted(unknown)}")

    handle_problems(app, _engine_down)

    @app.route("/openapi.json", methods=["GET"])
    @inlineCallbacks
    def openapi(self, request: IRequest) -> Generator[Deferred[Any], Any, bytes]:
        """This API's OpenAPI document, public as it reveals no data: the user API for everyone,
        the admin API too for those who may use it (the others must not learn it exists)."""
        document = user_document()
        if self._admin_caller is not None:
            try:
                yield self._admin_caller(request)
            except Problem:
                pass  # not an admin, or a wrong token: the public part, as for anyone
            else:
                document = admin_document()
        # The answer depends on who asks: no shared cache may keep one for another.
        request.setHeader(b"Vary", b"Cookie, Authorization")
        return json_response(request, document)

    def _branch(self, name: str) -> IResource:
        branch = self._branches.get(name)
        if branch is None:
            raise Problem(404, "no-such-page", N_("Not Found"))
        return branch

    @app.route("/files/", branch=True)
    def files(self, request: IRequest) -> IResource:
        return self._branch("files")

    @app.route("/classes/", branch=True)
    def classes(self, request: IRequest) -> IResource:
        return self._branch("classes")

    @app.route("/classwork/", branch=True)
    def classwork(self, request: IRequest) -> IResource:
        return self._branch("classwork")

    @app.route("/looks/", branch=True)
    def looks(self, request: IRequest) -> IResource:
        return self._branch("looks")

    @app.route("/me", methods=["GET"])
    @inlineCallbacks
    def me(self, request: IRequest):  # type: ignore[no-untyped-def]
        web = yield self._guard.signed_in(request)
        return json_response(request, {
            "id": web.user_id, "name": web.display_name, "groups": sorted(web.groups), "role": web.role,
        })

    @app.route("/desktops", methods=["GET"])
    @inlineCallbacks
    def list_desktops(self, request: IRequest):  # type: ignore[no-untyped-def]
        web = yield self._guard.signed_in(request)
        desktops = self._sessions.desktops_for(identity_of(web))
        return json_response(request, [
            {"name": d.name, "title": d.title, "description": d.description} for d in desktops
        ])

    @app.route("/sessions", methods=["GET"])
    @inlineCallbacks
    def list_sessions(self, request: IRequest):  # type: ignore[no-untyped-def]
        web = yield self._guard.signed_in(request)
        sessions = (yield self._store.sessions_of(web.user_id))[:RECENT_SESSIONS]
        positions = yield self._store.queue_positions()
        homes = yield self._store.homes_of(web.user_id)
        prestarts = yield self._store.prestarts_of(s.id for s in sessions)
        return json_response(request, [
            self._with_looks(session_view(s, self._sessions, positions.get(s.id), request_language(request), homes,
                                          prestarts.get(s.id)))
            for s in sessions
        ])

    @app.route("/homes", methods=["GET"])
    @inlineCallbacks
    def list_homes(self, request: IRequest):  # type: ignore[no-untyped-def]
        web = yield self._guard.signed_in(request)
        homes = yield self._store.homes_of(web.user_id)
        return json_response(request, {"items": [home_view(h, self._sessions) for h in homes]})

    @app.route("/sessions", methods=["POST"])
    @inlineCallbacks
    def start_session(self, request: IRequest):  # type: ignore[no-untyped-def]
        self._guard.require_same_origin(request)
        web = yield self._guard.signed_in(request)
        desktop_name = _desktop_from_body(request)
        try:
            session, created = yield self._sessions.start(identity_of(web), desktop_name)
        except UnknownDesktop:
            raise Problem(404, "no-such-desktop", N_("No such desktop"), N_("There is no desktop {name}."),
                          values={"name": repr(desktop_name)}) from None
        except DesktopNotAllowed:
            raise Problem(403, "desktop-not-allowed", N_("Desktop not allowed"),
                          N_("Your groups do not include the desktop {name}."),
                          values={"name": repr(desktop_name)}) from None
        except SessionLimitReached as e:
            raise Problem(409, "session-limit", N_("Too many desktops running"),
                          PluralText("You can run {count} desktop at a time; stop it first.",
                                     "You can run {count} desktops at a time; stop one first.", e.args[0])) from None
        except DoesNotFit:
            raise Problem(507, "desktop-too-large", N_("Desktop too large for this server"),
                          N_("The desktop {name} needs more memory than this server may give "
                             "desktops; tell your administrator."), values={"name": repr(desktop_name)}) from None
        except QueueFull:
            problem = Problem(503, "queue-full", N_("Too many people are waiting"),
                              N_("All desktops are in use and the queue is full. Try again in a minute."))
            problem.headers[b"Retry-After"] = str(QUEUE_RETRY_AFTER).encode()
            raise problem from None
        request.setHeader(b"Location", f"/api/sessions/{session.id}".encode())
        return json_response(request, (yield self._view(request, session)), 202 if created else 200)

    @app.route("/sessions/<session_id>", methods=["GET"])
    @inlineCallbacks
    def get_session(self, request: Request, session_id: str):  # type: ignore[no-untyped-def]
        web = yield self._guard.signed_in(request)
        session = yield self._own_session(web.user_id, session_id)
        wait = _arg(request, b"wait")
        if wait not in (None, "ready", "change"):
            raise Problem(400, "invalid-parameter", N_("Invalid parameter"), N_("wait must be ready or change."))
        deadline = self._sessions.now() + LONG_POLL
        if wait == "ready":
            while session.state in (QUEUED, STARTING) and self._sessions.now() < deadline:
                yield self._next_change(request, session.id, deadline)
                session = yield self._own_session(web.user_id, session_id)
        elif wait == "change" and _unchanged_since(_arg(request, b"since"), session):
            yield self._next_change(request, session.id, deadline)
            session = yield self._own_session(web.user_id, session_id)
        return json_response(request, (yield self._view(request, session)))

    @app.route("/sessions/<session_id>", methods=["DELETE"])
    @inlineCallbacks
    def stop_session(self, request: IRequest, session_id: str):  # type: ignore[no-untyped-def]
        self._guard.require_same_origin(request)
        web = yield self._guard.signed_in(request)
        session = yield self._own_session(web.user_id, session_id)
        stopped = yield self._sessions.stop(session, web.user_id)
        return json_response(request, (yield self._view(request, stopped)))

    def _next_change(self, request: Request, session_id: str, deadline: float) -> Deferred[None]:
        waiting = self._sessions.watch.wait(session_id, max(0.0, deadline - self._sessions.now()))
        # The browser left: stop waiting for it.
        request.notifyFinish().addErrback(lambda _: waiting.cancel())
        return waiting

    @inlineCallbacks
    def _view(self, request: IRequest, session: DesktopSession) -> Generator[Deferred[Any], Any, dict[str, Any]]:
        position = None
        if session.state == QUEUED:
            position = (yield self._store.queue_positions()).get(session.id)
        homes = yield self._store.homes_of(session.owner)
        prestart = (yield self._store.prestarts_of([session.id])).get(session.id)
        return self._with_looks(session_view(session, self._sessions, position, request_language(request), homes,
                                             prestart))

    def _with_looks(self, view: dict[str, Any]) -> dict[str, Any]:
        """The view with who is watching it and who asks for control (only its owner sees views)."""
        if self._looks_of is not None and view["state"] == READY:
            view["looks"] = self._looks_of(view["id"])
        return view

    @inlineCallbacks
    def _own_session(self, user_id: str, session_id: str):  # type: ignore[no-untyped-def]
        session = yield self._store.get_session(session_id)
        if session is None or session.owner != user_id:
            raise Problem(404, "no-such-session", N_("No such desktop session"))
        return session


def _unchanged_since(since: str | None, session: DesktopSession) -> bool:
    """Whether the page's view (stamped `since`, the view's `updated`) is still the current one.
    Compared as numbers: JavaScript writes 1.0 as "1"."""
    if since is None:
        return True
    try:
        return abs(float(since) - session.updated) < 1e-6
    except ValueError:
        raise Problem(400, "invalid-parameter", N_("Invalid parameter"), N_("since must be a number.")) from None


def _arg(request: IRequest, name: bytes) -> str | None:
    values = request.args.get(name)
    return values[0].decode("utf-8", "replace") if values else None


def _desktop_from_body(request: IRequest) -> str:
    value = read_json_body(request)
    if not isinstance(value, dict) or not isinstance(value.get("desktop"), str) or not value["desktop"]:
        raise Problem(422, "invalid-request", N_("Invalid request"),
                      N_('The body must be an object like {"desktop": "NAME"}.'))
    return value["desktop"]
