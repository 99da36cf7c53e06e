"""Looking over a pupil's shoulder: who is watching which session, control with the pupil's consent,
and the API under /api/looks/ (docs/teachers.md, "Looking at a pupil's desktop").

    GET    /api/looks/SESSION                  a teacher: the pupil, the look page's address, control
    POST   /api/looks/SESSION/control          a watching teacher asks for (or, with "on", takes) control
    DELETE /api/looks/SESSION/control          the teacher gives control back, or the pupil takes it back
    POST   /api/looks/SESSION/control/answer   the pupil: {"accept": true|false} to the request

Looks and controls live in memory, with the look's bridge (relay/bridge/): they end when it closes.
The view-only filter in the bridge enforces them; this module only flips a bridge's `control`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import attr
from klein import Klein
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from ..config.classes import CONTROL_OFF, CONTROL_ON
from ..i18n import N_
from ..lifecycle.watch import SessionWatch
from ..relay.bridge import BridgeClosed, BridgeListener, BridgeTarget, DesktopBridgeFactory
from ..store import SQLiteStore, WebSession
from .access import DesktopAccess
from .guard import RequestGuard
from .responses import Problem, handle_problems, json_response, read_json_body


def look_url(session_id: str) -> str:
    """The look page of a session (helper pages link here)."""
    return f"/look/{session_id}/"


@attr.s(auto_attribs=True)
class _Look:
    teacher: str
    name: str
    since: float
    bridges: int = 0
    control: bool = False
    control_since: float | None = None


class Looks:
    """The open looks per session, told by the bridges (a BridgeListener in front of `then`, which
    gets every other bridge's news), and the control requests; wakes the pupil's page at each change."""

    _log = Logger()

    def __init__(
        self, bridges: DesktopBridgeFactory, watch: SessionWatch, store: SQLiteStore, clock: IReactorTime,
        then: BridgeListener,
    ) -> None:
        self._bridges = bridges
        self._watch = watch
        self._store = store
        self._clock = clock
        self._then = then
        self._looks: dict[str, dict[str, _Look]] = {}
        # session -> (teacher, name, since) of the one request the pupil has not answered yet.
        self._asked: dict[str, tuple[str, str, float]] = {}

    # -- the bridges' news --------------------------------------------------------------

    def bridge_opened(self, target: BridgeTarget) -> None:
        """A bridge opened: a look starts (or gets another connection)."""
        if target.looking_at is None:
            self._then.bridge_opened(target)
            return
        looks = self._looks.setdefault(target.session_id, {})
        look = looks.get(target.user_id)
        if look is None:
            now = self._clock.seconds()
            # teacher_control = on: control from the start.
            look = looks[target.user_id] = _Look(target.user_id, target.viewer_name, now, control=target.control,
                                                 control_since=now if target.control else None)
            self._audit(target.user_id, "look.start", target.session_id, f"pupil={target.looking_at}",
                        target.address)
        elif look.control:
            self._set_control(target.session_id, target.user_id, True)
        look.bridges += 1
        self._watch.changed([target.session_id])

    def bridge_closed(self, target: BridgeTarget, closed: BridgeClosed) -> None:
        """A bridge closed: the last one of a teacher's look ends it, and its control."""
        if target.looking_at is None:
            self._then.bridge_closed(target, closed)
            return
        looks = self._looks.get(target.session_id, {})
        look = looks.get(target.user_id)
        if look is None:
            return
        look.bridges -= 1
        if look.bridges > 0:
            return
        del looks[target.user_id]
        if not looks:
            self._looks.pop(target.session_id, None)
        now = self._clock.seconds()
        if look.control:
            self._audit(target.user_id, "control.end", target.session_id,
                        f"pupil={target.looking_at} by=look-end since={look.control_since:.0f} until={now:.0f}")
        asked = self._asked.get(target.session_id)
        if asked is not None and asked[0] == target.user_id:
            del self._asked[target.session_id]
        self._audit(target.user_id, "look.end", target.session_id,
                    f"pupil={target.looking_at} since={look.since:.0f} until={now:.0f} {closed.audit_detail()}",
                    target.address)
        self._watch.changed([target.session_id])

    # -- what pages show ----------------------------------------------------------------

    def of_session(self, session_id: str) -> dict[str, Any]:
        """For the pupil's session view: who watches (and who has control), and an open request."""
        looks = sorted(self._looks.get(session_id, {}).values(), key=lambda look: look.since)
        asked = self._asked.get(session_id)
        return {
            "watching": [{"name": look.name, "control": look.control} for look in looks],
            "control_request": {"name": asked[1], "at": asked[2]} if asked else None,
        }

    def watching(self, session_id: str, teacher: str) -> _Look | None:
        """A teacher's open look at a session, if any."""
        return self._looks.get(session_id, {}).get(teacher)

    def asked_by(self, session_id: str) -> str | None:
        """The teacher whose control request waits for the pupil's answer."""
        asked = self._asked.get(session_id)
        return asked[0] if asked else None

    # -- control ------------------------------------------------------------------------

    def ask(self, session_id: str, look: _Look, pupil: str) -> None:
        """A teacher asks the pupil for control."""
        self._asked[session_id] = (look.teacher, look.name, self._clock.seconds())
        self._audit(look.teacher, "control.ask", session_id, f"pupil={pupil}")
        self._watch.changed([session_id])

    def grant(self, session_id: str, teacher: str, pupil: str, by: str) -> None:
        """Control to this teacher's look (the pupil accepted, or teacher_control is on)."""
        look = self.watching(session_id, teacher)
        self._asked.pop(session_id, None)
        if look is None:
            return
        look.control = True
        look.control_since = self._clock.seconds()
        self._set_control(session_id, teacher, True)
        self._audit(by, "control.grant", session_id, f"pupil={pupil} teacher={teacher}")
        self._watch.changed([session_id])

    def refuse(self, session_id: str, pupil: str) -> None:
        """The pupil said no to the waiting request."""
        asked = self._asked.pop(session_id, None)
        if asked is not None:
            self._audit(pupil, "control.refuse", session_id, f"pupil={pupil} teacher={asked[0]}")
            self._watch.changed([session_id])

    def end_control(self, session_id: str, pupil: str, by: str) -> int:
        """Every look's control at this session ends (the pupil took it back, or a teacher gave it
        back: then only theirs); how many ended."""
        ended = 0
        now = self._clock.seconds()
        for look in list(self._looks.get(session_id, {}).values()):
            if look.control and by in (pupil, look.teacher):
                look.control = False
                self._set_control(session_id, look.teacher, False)
                self._audit(by, "control.end", session_id,
                            f"pupil={pupil} teacher={look.teacher} since={look.control_since:.0f} until={now:.0f}")
                ended += 1
        if ended:
            self._watch.changed([session_id])
        return ended

    def _set_control(self, session_id: str, teacher: str, allowed: bool) -> None:
        for bridge in self._bridges.bridges_for_session(session_id):
            target = bridge.target
            if target is not None and target.looking_at is not None and target.user_id == teacher:
                bridge.control = allowed

    def _audit(self, actor: str, action: str, session_id: str, detail: str, address: str = "") -> None:
        """One audit line, and the same event as one log line for admins."""
        self._log.info("{action} by {actor} at session {session}: {detail}", action=action, actor=actor,
                       session=session_id, detail=detail)
        d = self._store.audit(self._clock.seconds(), actor, action, session_id, detail, address)
        d.addErrback(lambda failure: self._log.failure(
            "cannot write the {action} of session {session} to the audit trail", failure,
            action=action, session=session_id,
        ))


class LooksAPI:
    """Klein routes under /api/looks/: a teacher's look and the control asked of, and answered by, the pupil."""

    app = Klein()
    _log = Logger()

    def __init__(
        self, looks: Looks, access: DesktopAccess, guard: RequestGuard, store: SQLiteStore, control_mode: str,
        clock: Callable[[], float],
    ) -> None:
        self._looks = looks
        self._access = access
        self._guard = guard
        self._store = store
        self._control_mode = control_mode
        self._clock = clock

    handle_problems(app, lambda error: Problem(503, "container-engine-unavailable",
                                               N_("Desktops are unavailable right now")))

    @app.route("/<session_id>", methods=["GET"])
    @inlineCallbacks
    def get_look(self, request: IRequest, session_id: str) -> Generator[Deferred[Any], Any, bytes]:
        web = yield self._guard.signed_in(request)
        _backend, pupil = yield self._access.look_for(web, session_id)
        look = self._looks.watching(session_id, web.user_id)
        return json_response(request, {
            "session": session_id,
            "pupil": {"id": pupil.user_id, "name": pupil.display_name},
            "look_url": look_url(session_id),
            "teacher_control": self._control_mode,
            "watching": look is not None,
            "control": _control_state(self._looks, session_id, web, look),
        })

    @app.route("/<session_id>/control", methods=["POST"])
    @inlineCallbacks
    def ask_control(self, request: IRequest, session_id: str) -> Generator[Deferred[Any], Any, bytes]:
        self._guard.require_same_origin(request)
        web = yield self._guard.signed_in(request)
        _backend, pupil = yield self._access.look_for(web, session_id)
        if self._control_mode == CONTROL_OFF:
            raise Problem(403, "control-off", N_("Control is switched off"),
                          N_("On this server, teachers can look at a pupil's desktop but not control it."))
        look = self._looks.watching(session_id, web.user_id)
        if look is None:
            raise Problem(409, "not-looking", N_("Not looking at this desktop"),
                          N_("Open the desktop's look page first, then ask for control."))
        if not look.control:
            if self._control_mode == CONTROL_ON:
                self._looks.grant(session_id, web.user_id, pupil.user_id, web.user_id)
            elif self._looks.asked_by(session_id) is None:
                self._looks.ask(session_id, look, pupil.user_id)
            elif self._looks.asked_by(session_id) != web.user_id:
                raise Problem(409, "control-asked", N_("Someone else asked first"),
                              N_("The pupil has not answered another teacher's request yet."))
        return json_response(request, {"control": _control_state(self._looks, session_id, web, look)}, 202)

    @app.route("/<session_id>/control", methods=["DELETE"])
    @inlineCallbacks
    def end_control(self, request: IRequest, session_id: str) -> Generator[Deferred[Any], Any, bytes]:
        self._guard.require_same_origin(request)
        web = yield self._guard.signed_in(request)
        session = yield self._store.get_session(session_id)
        if session is not None and session.owner == web.user_id:
            pupil = web.user_id
        else:
            _backend, seen = yield self._access.look_for(web, session_id)
            pupil = seen.user_id
        if self._looks.asked_by(session_id) == web.user_id:
            self._looks.refuse(session_id, pupil)
        ended = self._looks.end_control(session_id, pupil, web.user_id)
        return json_response(request, {"ended": ended})

    @app.route("/<session_id>/control/answer", methods=["POST"])
    @inlineCallbacks
    def answer(self, request: IRequest, session_id: str) -> Generator[Deferred[Any], Any, bytes]:
        self._guard.require_same_origin(request)
        web = yield self._guard.signed_in(request)
        session = yield self._store.get_session(session_id)
        if session is None or session.owner != web.user_id:
            raise Problem(404, "no-such-session", N_("No such desktop session"))
        body = read_json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("accept"), bool):
            raise Problem(422, "invalid-answer", N_("Invalid answer"), N_("Send {\"accept\": true} or false."))
        teacher = self._looks.asked_by(session_id)
        if teacher is None:
            raise Problem(409, "nothing-asked", N_("Nobody asked for control"),
                          N_("There is no request for control of this desktop to answer."))
        if body["accept"]:
            self._looks.grant(session_id, teacher, web.user_id, web.user_id)
        else:
            self._looks.refuse(session_id, web.user_id)
        return json_response(request, {"accepted": body["accept"], **self._looks.of_session(session_id)})


def _control_state(looks: Looks, session_id: str, web: WebSession, look: _Look | None) -> str:
    """What the teacher's bar shows: none, asked, granted."""
    if look is not None and look.control:
        return "granted"
    if looks.asked_by(session_id) == web.user_id:
        return "asked"
    return "none"
