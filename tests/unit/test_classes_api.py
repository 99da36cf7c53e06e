"""A teacher's class API (web/classes.py) through a real Site on loopback, with a real store, the
in-memory engine and a fake clock: the scope's 404s, stopping with a reason, starting for a
class, and assignments' validation and time box."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from fakes import IMAGE, FakeProvisioner, desktop
from treq.client import HTTPClient
from twisted.internet import defer, task
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.server import Site

from desktop_relay.auth import PUPIL, TEACHER, Identity
from desktop_relay.auth.classes import ClassScope
from desktop_relay.auth.websessions import WebSessions, token_hash
from desktop_relay.config.classes import ClassSettings
from desktop_relay.lifecycle import DesktopNotAllowed, DesktopSessions
from desktop_relay.lifecycle.assignments import ClassAssignments
from desktop_relay.store import SeenUser, SQLiteStore, WebSession
from desktop_relay.web.classes import ClassesAPI, moment
from desktop_relay.web.guard import RequestGuard

ORIGIN = "http://127.0.0.1:8080"
NOW = 1_800_000_000.0
ADA = Identity("ada", "Ada", frozenset({"klasse-7a"}), PUPIL)


class ClassesServer:
    """ClassesAPI on a loopback port; users signed in by name."""

    def __init__(self, store: SQLiteStore, settings: ClassSettings) -> None:
        from twisted.internet import reactor

        self.store = store
        self.clock = task.Clock()
        self.clock.advance(NOW)
        self.engine = FakeProvisioner([IMAGE])
        self.web_sessions = WebSessions(store, reactor, secure=False, idle=3600, lifetime=86400)
        self.guard = guard = RequestGuard(self.web_sessions, ORIGIN, ())
        self.sessions = DesktopSessions(
            store=store, provisioner=self.engine, probe=lambda backend: defer.succeed(True), clock=self.clock,
            desktops={"demo": desktop("demo"), "lab": desktop("lab", groups="", teachers_may_assign=True)},
            instance="test", max_per_user=3, start_timeout=5, stop_timeout=1,
        )
        self.assignments = ClassAssignments(store, self.sessions, self.clock)
        self.api = ClassesAPI(store, self.sessions, guard, ClassScope(settings), self.assignments)
        self.port = reactor.listenTCP(0, Site(self.api.app.resource()), interface="127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port.getHost().port}"
        self.http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
        self.cookies: dict[str, str] = {}

    async def people(self) -> None:
        """A teacher of 7a, a colleague in 7a, pupils of 7a and 7b."""
        for user, groups, role in [
            ("tina", {"klasse-7a", "lehrer"}, TEACHER), ("tom", {"klasse-7a", "lehrer"}, TEACHER),
            ("ada", {"klasse-7a"}, PUPIL), ("bob", {"klasse-7b"}, PUPIL),
        ]:
            await self.store.user_signed_in(SeenUser(user, user.title(), frozenset(groups), role, NOW, NOW))
            token = f"token-{user}"
            await self.store.add_web_session(
                WebSession(token_hash(token), user, user.title(), frozenset(groups), 1e12, 1e12, role))
            self.cookies[user] = f"{self.web_sessions.cookie_name.decode()}={token}"

    async def settle(self) -> None:
        while self.sessions.working():
            for working in self.sessions.working():
                await working

    async def call(self, method: str, user: str, path: str, body: Any = None,
                   content_type: str = "application/json") -> tuple[int, Any]:
        headers = {"Cookie": self.cookies.get(user, ""), "Origin": ORIGIN, "Content-Type": content_type}
        data = json.dumps(body).encode() if body is not None else None
        response = await self.http.request(method, self.url + path, data=data, headers=headers)
        text = await response.content()
        return response.code, json.loads(text) if text else None

    async def start(self, identity: Identity, name: str) -> str:
        session, _ = await self.sessions.start(identity, name)
        await self.settle()
        return session.id


@pytest_twisted.async_yield_fixture
async def server(store: SQLiteStore) -> AsyncIterator[ClassesServer]:
    served = ClassesServer(store, ClassSettings(class_groups=("klasse-*",)))
    await served.people()
    yield served
    served.assignments.stop()
    await served.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_teacher_sees_their_class_with_its_pupils_only(server: ClassesServer) -> None:
    status, body = await server.call("GET", "tina", "/")
    assert status == 200 and body["classes"] == [{"name": "klasse-7a", "pupils": 1}]
    await server.start(ADA, "demo")
    status, body = await server.call("GET", "tina", "/klasse-7a")
    assert status == 200 and [p["id"] for p in body["pupils"]] == ["ada"]
    (session,) = body["pupils"][0]["sessions"]
    assert session["state"] == "ready" and session["idle_since"] == NOW and session["look_url"].startswith("/look/")


@pytest.mark.parametrize(("user", "path"), [
    ("tina", "/klasse-7b"), ("tina", "/lehrer"), ("tina", "/klasse-7b/assignments"), ("ada", "/klasse-7a"),
])
@pytest_twisted.ensureDeferred
async def test_a_class_outside_the_scope_is_404_like_one_that_does_not_exist(
    server: ClassesServer, user: str, path: str
) -> None:
    status, body = await server.call("GET", user, path)
    assert status == 404 and body["type"].endswith("no-such-class")
    _, missing = await server.call("GET", user, "/klasse-9z")
    assert {k: v for k, v in body.items() if k not in ("detail", "instance")} == {
        k: v for k, v in missing.items() if k not in ("detail", "instance")}


@pytest_twisted.ensureDeferred
async def test_a_pupil_sees_no_classes(server: ClassesServer) -> None:
    assert await server.call("GET", "ada", "/") == (200, {"classes": [], "start_for_everyone": True})


@pytest_twisted.ensureDeferred
async def test_see_all_admins_see_every_class_seen(store: SQLiteStore) -> None:
    served = ClassesServer(store, ClassSettings(class_groups=("klasse-*",), admins_see_all_classes=True))
    try:
        await served.people()
        await store.add_web_session(WebSession(token_hash("adm"), "root", "Root", frozenset(), 1e12, 1e12, "admin"))
        served.cookies["root"] = f"{served.web_sessions.cookie_name.decode()}=adm"
        status, body = await served.call("GET", "root", "/")
        assert status == 200 and [c["name"] for c in body["classes"]] == ["klasse-7a", "klasse-7b"]
    finally:
        await served.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_stop_with_a_reason_ends_the_pupils_desktop_as_the_teachers(server: ClassesServer) -> None:
    session_id = await server.start(ADA, "demo")
    status, body = await server.call("POST", "tina", f"/klasse-7a/sessions/{session_id}/stop",
                                     {"reason": "  Eyes   to the front, please. "})
    assert status == 200 and body["state"] == "stopped" and body["end_reason"] == "teacher"
    stored = await server.store.get_session(session_id)
    assert stored is not None and stored.reason == "Eyes to the front, please." and server.engine.containers == {}
    (line,) = [a for a in await server.store.audit_trail() if a["action"] == "class.stop"]
    assert line["actor"] == "tina" and line["target"] == session_id and "ada" in line["detail"]
    status, body = await server.call("POST", "tina", f"/klasse-7a/sessions/{session_id}/stop", {"reason": ""})
    assert status == 409 and body["type"].endswith("session-not-active")


@pytest_twisted.ensureDeferred
async def test_stopping_a_desktop_outside_the_class_is_404_like_a_foreign_session(server: ClassesServer) -> None:
    bobs = await server.start(Identity("bob", "Bob", frozenset({"klasse-7b"}), PUPIL), "demo")
    toms = await server.start(Identity("tom", "Tom", frozenset({"klasse-7a", "lehrer"}), TEACHER), "demo")
    for session_id in (bobs, toms, "no-such-id"):
        status, body = await server.call("POST", "tina", f"/klasse-7a/sessions/{session_id}/stop", {"reason": "x"})
        assert status == 404 and body["type"].endswith("no-such-session")
    status, body = await server.call("POST", "tina", f"/klasse-7b/sessions/{bobs}/stop", {"reason": "x"})
    assert status == 404 and body["type"].endswith("no-such-class")
    assert len(server.engine.containers) == 2


@pytest.mark.parametrize(("body", "content_type", "status"), [
    ({"reason": "x" * 201}, "application/json", 422), ({"reason": 5}, "application/json", 422),
    ([1], "application/json", 422), ({"reason": "x"}, "text/plain", 415),
])
@pytest_twisted.ensureDeferred
async def test_a_bad_stop_body_is_refused_and_stops_nothing(
    server: ClassesServer, body: Any, content_type: str, status: int
) -> None:
    session_id = await server.start(ADA, "demo")
    answer, _ = await server.call("POST", "tina", f"/klasse-7a/sessions/{session_id}/stop", body, content_type)
    assert answer == status and len(server.engine.containers) == 1


@pytest_twisted.ensureDeferred
async def test_start_for_everyone_starts_each_pupil_once_and_says_why_not(server: ClassesServer) -> None:
    status, body = await server.call("POST", "tina", "/klasse-7a/start", {"desktop": "demo"})
    assert status == 200 and [(p["id"], p["outcome"]) for p in body["pupils"]] == [("ada", "starting")]
    await server.settle()
    status, body = await server.call("POST", "tina", "/klasse-7a/start", {"desktop": "demo"})
    assert body["pupils"][0] == {"id": "ada", "name": "Ada", "outcome": "skipped", "why": "already-running"}
    status, body = await server.call("POST", "tina", "/klasse-7a/start", {"desktop": "lab"})
    assert body["pupils"][0]["why"] == "not-allowed"
    status, body = await server.call("POST", "tina", "/klasse-7a/start", {"desktop": "nope"})
    assert status == 422 and body["type"].endswith("unknown-desktop")
    assert [a["detail"] for a in await server.store.audit_trail() if a["action"] == "class.start"][-1] == (
        "demo: 1 of 1 started")


@pytest_twisted.ensureDeferred
async def test_start_for_everyone_is_403_when_the_admin_turned_it_off(store: SQLiteStore) -> None:
    served = ClassesServer(store, ClassSettings(class_groups=("klasse-*",), start_for_everyone=False))
    try:
        await served.people()
        status, body = await served.call("POST", "tina", "/klasse-7a/start", {"desktop": "demo"})
        assert status == 403 and body["type"].endswith("class-start-off") and served.engine.containers == {}
    finally:
        await served.port.stopListening()


@pytest.mark.parametrize(("body", "slug"), [
    ({"desktop": "demo", "until": NOW + 60}, "desktop-not-assignable"),
    ({"desktop": "nope", "until": NOW + 60}, "desktop-not-assignable"),
    ({"desktop": "lab", "from": NOW + 60, "until": NOW + 60}, "invalid-request"),
    ({"desktop": "lab", "from": NOW - 120, "until": NOW - 60}, "invalid-request"),
    ({"desktop": "lab", "until": NOW + 367 * 86400}, "invalid-request"),
    ({"desktop": "lab", "until": "2027-01-15T10:00:00"}, "invalid-request"),
    ({"desktop": "lab", "until": "tomorrow"}, "invalid-request"),
    ({"desktop": "lab", "until": True}, "invalid-request"),
    ({"desktop": "lab"}, "invalid-request"),
    ({"desktop": "lab", "until": NOW + 60, "note": "x" * 501}, "invalid-request"),
])
@pytest_twisted.ensureDeferred
async def test_a_bad_assignment_is_422_and_stores_nothing(server: ClassesServer, body: Any, slug: str) -> None:
    status, problem = await server.call("POST", "tina", "/klasse-7a/assignments", body)
    assert status == 422 and problem["type"].endswith(slug)
    assert await server.store.open_assignments(0) == []


def test_times_are_iso_8601_with_a_zone_or_epoch_seconds() -> None:
    assert moment("2027-01-15T10:00:00+01:00", "from") == moment("2027-01-15T09:00:00Z", "from") == 1800003600.0
    assert moment(1800003600, "from") == 1800003600.0


@pytest_twisted.ensureDeferred
async def test_an_assignment_offers_its_desktop_to_the_class_only_inside_its_window(server: ClassesServer) -> None:
    from twisted.internet import reactor

    status, created = await server.call("POST", "tina", "/klasse-7a/assignments",
                                        {"desktop": "lab", "from": NOW + 10, "until": NOW + 100, "note": "Lab 1"})
    assert status == 201 and created["status"] == "upcoming" and created["creator"] == "tina"
    bob = Identity("bob", "Bob", frozenset({"klasse-7b"}), PUPIL)
    assert [d.name for d in server.sessions.desktops_for(ADA)] == ["demo"]
    with pytest.raises(DesktopNotAllowed):
        await server.sessions.start(ADA, "lab")
    server.clock.advance(10)
    assert [d.name for d in server.sessions.desktops_for(ADA)] == ["demo", "lab"]
    assert [d.name for d in server.sessions.desktops_for(bob)] == ["demo"]
    session_id = await server.start(ADA, "lab")
    server.clock.advance(90)  # until: the timer stops the desktop it offered
    for _ in range(100):
        stored = await server.store.get_session(session_id)
        if stored is not None and stored.state == "stopped":
            break
        await task.deferLater(reactor, 0.02, lambda: None)
    assert stored is not None and stored.state == "stopped" and stored.end_reason == "teacher"
    with pytest.raises(DesktopNotAllowed):
        await server.sessions.start(ADA, "lab")
    _, listed = await server.call("GET", "tina", "/klasse-7a/assignments")
    assert [a["status"] for a in listed["assignments"]] == ["ended"] and listed["desktops"] == ["lab"]
    assert [a["action"] for a in await server.store.audit_trail() if a["action"].startswith("assignment.")] == [
        "assignment.create"]


@pytest_twisted.ensureDeferred
async def test_ending_an_assignment_stops_its_desktops_and_is_audited(server: ClassesServer) -> None:
    _, created = await server.call("POST", "tina", "/klasse-7a/assignments", {"desktop": "lab", "until": NOW + 3600})
    session_id = await server.start(ADA, "lab")
    status, _ = await server.call("DELETE", "tom", f"/klasse-7b/assignments/{created['id']}")
    assert status == 404
    status, _ = await server.call("DELETE", "tina", "/klasse-7a/assignments/nope")
    assert status == 404
    status, body = await server.call("DELETE", "tom", f"/klasse-7a/assignments/{created['id']}")
    assert status == 200 and body["status"] == "ended" and body["stopped"] == 1
    stored = await server.store.get_session(session_id)
    assert stored is not None and stored.state == "stopped" and stored.end_reason == "teacher"
    status, body = await server.call("DELETE", "tina", f"/klasse-7a/assignments/{created['id']}")
    assert status == 409 and body["type"].endswith("assignment-ended")
    (line,) = [a for a in await server.store.audit_trail() if a["action"] == "assignment.end"]
    assert line["actor"] == "tom" and line["target"] == created["id"]


@pytest_twisted.ensureDeferred
async def test_an_assignment_that_ended_while_no_relay_ran_stops_its_desktops_at_start_up(
    server: ClassesServer,
) -> None:
    await server.call("POST", "tina", "/klasse-7a/assignments", {"desktop": "lab", "until": NOW + 60})
    session_id = await server.start(ADA, "lab")
    server.assignments.stop()  # the relay stops; the assignment ends while none runs
    server.clock.advance(120)
    restarted = ClassAssignments(server.store, server.sessions, server.clock)
    assert await restarted.start(NOW - 86400) == 1
    stored = await server.store.get_session(session_id)
    assert stored is not None and stored.state == "stopped" and stored.end_reason == "teacher"
    restarted.stop()


@pytest_twisted.ensureDeferred
async def test_past_its_until_an_assignment_refuses_the_desktops_upgrade_before_any_timer_stops_it(
    server: ClassesServer,
) -> None:
    from desktop_relay.web.access import DesktopAccess
    from desktop_relay.web.responses import Problem

    await server.call("POST", "tina", "/klasse-7a/assignments", {"desktop": "lab", "until": NOW + 60})
    session_id = await server.start(ADA, "lab")
    access = DesktopAccess(server.store, server.sessions, server.guard)
    web = WebSession(token_hash("token-ada"), "ada", "Ada", frozenset({"klasse-7a"}), 1e12, 1e12, PUPIL)
    assert (await access.backend_for(web, session_id)).port is not None
    server.assignments.stop()  # no timer: the one decision refuses it by itself
    server.clock.advance(60)
    with pytest.raises(Problem) as refused:
        await access.backend_for(web, session_id)
    assert refused.value.status == 403 and refused.value.slug == "desktop-not-allowed"


@pytest_twisted.ensureDeferred
async def test_a_stop_without_a_reason_tells_the_pupil_in_their_language(server: ClassesServer) -> None:
    from desktop_relay.i18n import language

    session_id = await server.start(ADA, "demo")
    status, _ = await server.call("POST", "tina", f"/klasse-7a/sessions/{session_id}/stop", {})
    stored = await server.store.get_session(session_id)
    assert status == 200 and stored is not None and stored.reason == "Stopped by your teacher."
    assert language("de").stored(stored.reason) == "Von deiner Lehrkraft beendet."


@pytest_twisted.ensureDeferred
async def test_a_queued_pupil_is_shown_with_their_place_in_line(store: SQLiteStore) -> None:
    from desktop_relay.capacity import CapacityLimits

    served = ClassesServer(store, ClassSettings(class_groups=("klasse-*",)))
    try:
        await served.people()
        served.sessions.reconfigure(served.sessions.desktops, CapacityLimits(max_total=1), 3)
        await served.start(Identity("tom", "Tom", frozenset({"klasse-7a", "lehrer"}), TEACHER), "demo")
        await served.start(ADA, "demo")
        _, view = await served.call("GET", "tina", "/klasse-7a")
        (session,) = view["pupils"][0]["sessions"]
        assert session["state"] == "queued" and session["position"] == 1 and "look_url" not in session
    finally:
        served.assignments.stop()
        await served.port.stopListening()
