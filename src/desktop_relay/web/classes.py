"""The class view's API under /api/classes/: the classes a teacher teaches, their pupils with their
desktops' states, stopping a pupil's desktop with a reason, starting one desktop for a whole class,
and assignments (a desktop offered to a class for a time). Every check goes through ClassScope:
a class outside the caller's scope answers 404 like one that does not exist.

    GET    /api/classes/                                the classes taught, with pupil counts
    GET    /api/classes/CLASS                           its pupils and their desktop sessions
    POST   /api/classes/CLASS/sessions/ID/stop          {"reason": "..."}: stop a pupil's desktop
    POST   /api/classes/CLASS/start                     {"desktop": NAME}: a start for every pupil
    GET    /api/classes/CLASS/assignments               its assignments, current, to come and recent
    POST   /api/classes/CLASS/assignments               {"desktop", "from", "until", "note"}
    DELETE /api/classes/CLASS/assignments/ID            end it now
"""

from __future__ import annotations

import secrets
from collections.abc import Generator
from datetime import datetime
from typing import Any

from klein import Klein
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from ..auth import PUPIL, Identity
from ..auth.classes import ClassScope
from ..capacity import DoesNotFit, QueueFull, SessionLimitReached
from ..engine.interface import ContainerEngineUnavailable
from ..i18n import N_
from ..lifecycle import DesktopNotAllowed, DesktopSessions, UnknownDesktop
from ..lifecycle.assignments import ClassAssignments
from ..lifecycle.reasons import TEACHER
from ..store import ACTIVE_STATES, QUEUED, READY, Assignment, DesktopSession, SeenUser, SQLiteStore, WebSession
from .guard import RequestGuard
from .responses import Problem, handle_problems, json_response, read_json_body

# The longest reason a teacher may give the pupil, and note on an assignment (characters).
MAX_REASON = 200
MAX_NOTE = 500
# The longest an assignment may last, and how long ended ones stay in the class's list.
MAX_ASSIGNMENT = 366 * 86400
RECENT_ASSIGNMENTS = 7 * 86400
# The words stored when a teacher gives no reason.
NO_REASON = N_("Stopped by your teacher.")

# Why a start for everyone did not queue a pupil's desktop.
SKIP_RUNNING, SKIP_NOT_ALLOWED, SKIP_LIMIT, SKIP_QUEUE_FULL, SKIP_TOO_BIG, SKIP_ENGINE = (
    "already-running", "not-allowed", "limit", "queue-full", "does-not-fit", "engine-unavailable"
)


def _engine_down(error: ContainerEngineUnavailable) -> Problem:
    return Problem(503, "container-engine-unavailable", N_("Desktops are unavailable right now"),
                   N_("The server cannot reach its container engine. Try again in a minute."))


def _no_class(class_group: str) -> Problem:
    return Problem(404, "no-such-class", N_("No such class"), N_("You teach no class {name}."),
                   values={"name": repr(class_group)})


def _invalid(detail: str, **values: Any) -> Problem:
    return Problem(422, "invalid-request", N_("Invalid request"), detail, values=values or None)


class ClassesAPI:
    """Klein routes of a teacher's "My classes"."""

    app = Klein()
    _log = Logger()

    def __init__(self, store: SQLiteStore, sessions: DesktopSessions, guard: RequestGuard, scope: ClassScope,
                 assignments: ClassAssignments) -> None:
        self._store = store
        self._sessions = sessions
        self._guard = guard
        self._scope = scope
        self._assignments = assignments

    handle_problems(app, _engine_down)

    @app.route("/", methods=["GET"])
    @inlineCallbacks
    def list_classes(self, request: IRequest) -> Generator[Deferred[Any], Any, bytes]:
        web = yield self._guard.signed_in(request)
        taught = self._scope.taught(web.role, web.groups)
        if taught is None:
            taught = self._scope.classes_in(frozenset((yield self._store.groups_seen())))
        classes = []
        for class_group in sorted(taught):
            pupils = yield self._pupils(class_group)
            classes.append({"name": class_group, "pupils": len(pupils)})
        return json_response(request, {"classes": classes,
                                       "start_for_everyone": self._scope.settings.start_for_everyone})

    @app.route("/<class_group>", methods=["GET"])
    @inlineCallbacks
    def class_view(self, request: IRequest, class_group: str) -> Generator[Deferred[Any], Any, bytes]:
        yield self._teacher_of(request, class_group)
        positions = yield self._store.queue_positions()
        pupils = []
        for pupil in (yield self._pupils(class_group)):
            sessions = [s for s in (yield self._store.sessions_of(pupil.user_id)) if s.state in ACTIVE_STATES]
            pupils.append({
                "id": pupil.user_id, "name": pupil.display_name, "last_sign_in": pupil.last_sign_in,
                "sessions": [self._session_view(s, positions.get(s.id)) for s in sessions],
            })
        return json_response(request, {
            "name": class_group, "pupils": pupils, "now": self._sessions.now(),
            "start_for_everyone": self._scope.settings.start_for_everyone,
            "desktops": [{"name": d.name, "title": d.title, "assignable": d.teachers_may_assign}
                         for d in self._sessions.desktops.values()],
        })

    @app.route("/<class_group>/sessions/<session_id>/stop", methods=["POST"])
    @inlineCallbacks
    def stop(self, request: IRequest, class_group: str, session_id: str) -> Generator[Deferred[Any], Any, bytes]:
        self._guard.require_same_origin(request)
        web = yield self._teacher_of(request, class_group)
        body = read_json_body(request)
        reason = body.get("reason", "") if isinstance(body, dict) else None
        if not isinstance(reason, str) or len(reason.strip()) > MAX_REASON:
            raise _invalid(N_("reason must be text of at most {limit} characters."), limit=MAX_REASON)
        session = yield self._store.get_session(session_id)
        pupil = (yield self._store.seen_user(session.owner)) if session is not None else None
        if (session is None or pupil is None or not self._in_class(pupil, class_group)
                or not self._scope.may_see(web.role, web.groups, pupil.role, pupil.groups)):
            # Someone else's session, or a pupil of another class: as if it did not exist.
            raise Problem(404, "no-such-session", N_("No such desktop session"),
                          N_("There is no desktop session with this address for you."))
        if session.state not in ACTIVE_STATES:
            raise Problem(409, "session-not-active", N_("Desktop not running"),
                          N_("This desktop session is {state} already."), values={"state": session.state})
        words = " ".join(reason.split()) or NO_REASON
        stopped = yield self._sessions.stop(session, web.user_id, TEACHER, words)
        yield self._store.audit(self._sessions.now(), web.user_id, "class.stop", session.id,
                                f"{class_group} {session.owner} {words}")
        self._log.info("{teacher} stopped {pupil}'s session {session} of {class_group}: {reason}",
                       teacher=web.user_id, pupil=session.owner, session=session.id, class_group=class_group,
                       reason=words)
        return json_response(request, self._session_view(stopped, None))

    @app.route("/<class_group>/start", methods=["POST"])
    @inlineCallbacks
    def start_for_everyone(self, request: IRequest, class_group: str) -> Generator[Deferred[Any], Any, bytes]:
        self._guard.require_same_origin(request)
        web = yield self._teacher_of(request, class_group)
        if not self._scope.settings.start_for_everyone:
            raise Problem(403, "class-start-off", N_("Starting for a class is off"),
                          N_("The administrator has not allowed starting a desktop for a whole class."))
        body = read_json_body(request)
        name = body.get("desktop") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name:
            raise _invalid(N_('The body must be an object like {"desktop": "NAME"}.'))
        if name not in self._sessions.desktops:
            raise Problem(422, "unknown-desktop", N_("Unknown desktop"), N_("There is no desktop {name}."),
                          values={"name": repr(name)})
        results = []
        for pupil in (yield self._pupils(class_group)):
            outcome = yield self._start_one(pupil, name)
            results.append({"id": pupil.user_id, "name": pupil.display_name, **outcome})
        started = sum(1 for r in results if "session" in r)
        yield self._store.audit(self._sessions.now(), web.user_id, "class.start", class_group,
                                f"{name}: {started} of {len(results)} started")
        self._log.info("{teacher} started {desktop} for {class_group}: {started} of {count} pupils",
                       teacher=web.user_id, desktop=name, class_group=class_group, started=started,
                       count=len(results))
        return json_response(request, {"desktop": name, "pupils": results})

    @app.route("/<class_group>/assignments", methods=["GET"])
    @inlineCallbacks
    def list_assignments(self, request: IRequest, class_group: str) -> Generator[Deferred[Any], Any, bytes]:
        yield self._teacher_of(request, class_group)
        now = self._sessions.now()
        found = yield self._store.assignments_of(class_group, now - RECENT_ASSIGNMENTS)
        return json_response(request, {"assignments": [self._assignment_view(a, now) for a in found],
                                       "desktops": [d.name for d in self._sessions.desktops.values()
                                                    if d.teachers_may_assign]})

    @app.route("/<class_group>/assignments", methods=["POST"])
    @inlineCallbacks
    def create_assignment(self, request: IRequest, class_group: str) -> Generator[Deferred[Any], Any, bytes]:
        self._guard.require_same_origin(request)
        web = yield self._teacher_of(request, class_group)
        now = self._sessions.now()
        assignment = new_assignment(read_json_body(request), class_group, web.user_id, now, self._sessions)
        yield self._store.add_assignment(assignment)
        yield self._assignments.load()
        self._log.info("{teacher} offered {desktop} to {class_group} from {starts} until {ends} ({assignment})",
                       teacher=web.user_id, desktop=assignment.desktop, class_group=class_group,
                       starts=assignment.starts, ends=assignment.ends, assignment=assignment.id)
        return json_response(request, self._assignment_view(assignment, now), 201)

    @app.route("/<class_group>/assignments/<assignment_id>", methods=["DELETE"])
    @inlineCallbacks
    def end_assignment(self, request: IRequest, class_group: str,
                       assignment_id: str) -> Generator[Deferred[Any], Any, bytes]:
        self._guard.require_same_origin(request)
        web = yield self._teacher_of(request, class_group)
        found = yield self._store.assignment(assignment_id)
        if found is None or found.class_group != class_group:
            raise Problem(404, "no-such-assignment", N_("No such assignment"))
        now = self._sessions.now()
        ended = yield self._store.end_assignment(assignment_id, web.user_id, now)
        if ended is None:
            raise Problem(409, "assignment-ended", N_("Assignment over"), N_("This assignment has ended already."))
        stopped = yield self._assignments.load(web.user_id)
        self._log.info("{teacher} ended assignment {assignment} of {desktop} to {class_group}; {count} stopped",
                       teacher=web.user_id, assignment=ended.id, desktop=ended.desktop, class_group=class_group,
                       count=stopped)
        return json_response(request, {**self._assignment_view(ended, now), "stopped": stopped})

    # -- shared -------------------------------------------------------------------------

    @inlineCallbacks
    def _teacher_of(self, request: IRequest, class_group: str) -> Generator[Deferred[Any], Any, WebSession]:
        web: WebSession = yield self._guard.signed_in(request)
        if not self._scope.teaches(web.role, web.groups, class_group):
            self._log.info("{user} ({role}) refused class {class_group}: not in their scope", user=web.user_id,
                           role=web.role, class_group=class_group)
            raise _no_class(class_group)
        return web

    def _in_class(self, pupil: SeenUser, class_group: str) -> bool:
        return pupil.role == PUPIL and class_group in pupil.groups

    @inlineCallbacks
    def _pupils(self, class_group: str) -> Generator[Deferred[Any], Any, list[SeenUser]]:
        members = yield self._store.members_seen(class_group)
        return [m for m in members if self._in_class(m, class_group)]

    @inlineCallbacks
    def _start_one(self, pupil: SeenUser, name: str) -> Generator[Deferred[Any], Any, dict[str, Any]]:
        identity = Identity(pupil.user_id, pupil.display_name, pupil.groups, pupil.role)
        for session in (yield self._store.sessions_of(pupil.user_id)):
            if session.desktop == name and session.state in ACTIVE_STATES:
                return {"outcome": "skipped", "why": SKIP_RUNNING}
        try:
            session, _ = yield self._sessions.start(identity, name)
        except (DesktopNotAllowed, UnknownDesktop):
            return {"outcome": "skipped", "why": SKIP_NOT_ALLOWED}
        except SessionLimitReached:
            return {"outcome": "skipped", "why": SKIP_LIMIT}
        except QueueFull:
            return {"outcome": "skipped", "why": SKIP_QUEUE_FULL}
        except DoesNotFit:
            return {"outcome": "skipped", "why": SKIP_TOO_BIG}
        except ContainerEngineUnavailable:
            return {"outcome": "skipped", "why": SKIP_ENGINE}
        return {"outcome": session.state, "session": session.id}

    def _session_view(self, session: DesktopSession, position: int | None) -> dict[str, Any]:
        desktop = self._sessions.desktop(session.desktop)
        last_input = self._sessions.activity.last_input(session.id) or session.last_input
        view: dict[str, Any] = {
            "id": session.id, "desktop": session.desktop, "title": desktop.title if desktop else session.desktop,
            "state": session.state, "created": session.created, "ready_at": session.ready_at,
            "end_reason": session.end_reason,
        }
        if session.state == QUEUED:
            view["position"] = position
        if session.state == READY:
            # Idle since the last input, or since it became ready when there was none.
            view["idle_since"] = max(t for t in (last_input, session.ready_at, session.created) if t is not None)
            view["look_url"] = f"/look/{session.id}/"
        return view

    def _assignment_view(self, assignment: Assignment, now: float) -> dict[str, Any]:
        status = "ended" if assignment.ended is not None or assignment.ends <= now else (
            "current" if assignment.current(now) else "upcoming")
        return {"id": assignment.id, "class": assignment.class_group, "desktop": assignment.desktop,
                "from": assignment.starts, "until": assignment.ends, "note": assignment.note,
                "creator": assignment.creator, "created": assignment.created, "ended": assignment.ended,
                "status": status}


def new_assignment(body: Any, class_group: str, creator: str, now: float, sessions: DesktopSessions) -> Assignment:
    """An assignment from a POST body, or the 422 Problem saying what is wrong with it."""
    if not isinstance(body, dict):
        raise _invalid(N_('The body must be an object like {"desktop": "NAME", "from": TIME, "until": TIME}.'))
    name = body.get("desktop")
    desktop = sessions.desktops.get(name) if isinstance(name, str) else None
    if desktop is None or not desktop.teachers_may_assign:
        raise Problem(422, "desktop-not-assignable", N_("This desktop cannot be offered"),
                      N_("Only desktops the administrator marked for teachers can be offered to a class."))
    starts = moment(body.get("from", now), "from")
    ends = moment(body.get("until"), "until")
    note = body.get("note", "")
    if not isinstance(note, str) or len(note) > MAX_NOTE:
        raise _invalid(N_("note must be text of at most {limit} characters."), limit=MAX_NOTE)
    if ends <= starts:
        raise _invalid(N_("until must be after from."))
    if ends <= now:
        raise _invalid(N_("until must be in the future."))
    if ends - starts > MAX_ASSIGNMENT:
        raise _invalid(N_("An assignment may last at most {days} days."), days=MAX_ASSIGNMENT // 86400)
    return Assignment(id=secrets.token_urlsafe(12), class_group=class_group, desktop=desktop.name,
                      starts=starts, ends=ends, note=note.strip(), creator=creator, created=now)


def moment(value: Any, field: str) -> float:
    """A point in time from JSON: epoch seconds, or ISO 8601 text with its time zone."""
    if isinstance(value, bool):
        raise _invalid(N_("{field} must be a time: ISO 8601 with a time zone, or epoch seconds."), field=field)
    if isinstance(value, (int, float)):
        if not 0 <= value < 1e11:
            raise _invalid(N_("{field} must be a time: ISO 8601 with a time zone, or epoch seconds."), field=field)
        return float(value)
    if isinstance(value, str) and len(value) <= 40:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:
                return parsed.timestamp()
    raise _invalid(N_("{field} must be a time: ISO 8601 with a time zone, or epoch seconds."), field=field)
