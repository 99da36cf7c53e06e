"""The admin API's core (/api/admin/sessions, /api/admin/users) through RelayWeb on a loopback
Site, with the in-memory engine: every endpoint for every kind of caller, the lists' filters and
pages, and each bad input refused with its problem and nothing changed."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import attr
import pytest
import pytest_twisted
from fakes import IMAGE, FakeProvisioner, desktop
from treq.client import HTTPClient
from twisted.internet import defer
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.server import Site

from desktop_relay.auth import Identity
from desktop_relay.auth.roles import Roles
from desktop_relay.auth.throttle import LoginThrottle
from desktop_relay.auth.websessions import WebSessions, token_hash
from desktop_relay.lifecycle import DesktopSessions
from desktop_relay.relay.assets import AssetRelay
from desktop_relay.relay.bridge import CLOSE_SIGNED_OUT, DesktopBridgeFactory
from desktop_relay.store import (
    FAILED,
    QUEUED,
    READY,
    STARTING,
    STOPPED,
    STOPPING,
    AdminToken,
    DesktopSession,
    SeenUser,
    SQLiteStore,
    WebSession,
)
from desktop_relay.web.access import DesktopAccess
from desktop_relay.web.admin import AdminAPI, AdminAuth
from desktop_relay.web.admin.sessions import SessionsAdmin
from desktop_relay.web.admin.users import UsersAdmin
from desktop_relay.web.api import UserAPI
from desktop_relay.web.app import RelayWeb
from desktop_relay.web.guard import RequestGuard

ORIGIN = "http://127.0.0.1:8080"
PROBLEM = "urn:desktop-relay:problem:"
PEOPLE = {
    "anna": Identity("anna", "Anna", frozenset({"pupils", "7b"}), "pupil"),
    "ben": Identity("ben", "Ben", frozenset({"pupils", "7c"}), "pupil"),
    "tina": Identity("tina", "Tina", frozenset({"teachers"}), "teacher"),
    "root": Identity("root", "Root", frozenset({"admins"}), "admin"),
}
# Who calls, and how: a web session's cookie or a bearer token.
COOKIES = {"pupil": "anna", "teacher": "tina", "admin": "root"}
TOKENS = {"token-read": "read-token", "token-write": "write-token", "token-revoked": "revoked-token",
          "token-wrong": "no-such-token"}
ROLES = ("none", "pupil", "teacher", "admin", "token-read", "token-write", "token-revoked", "token-wrong")


class Accounts:
    """Everyone in PEOPLE signs in with the password 'pw'."""

    def authenticate(self, username: str, password: str) -> defer.Deferred:
        person = PEOPLE.get(username)
        return defer.succeed(attr.evolve(person, role="pupil") if person and password == "pw" else None)


@attr.s(auto_attribs=True)
class Counters:
    """One open bridge as the admin API reads it."""

    owner: str
    bytes_to_browser: int
    bytes_to_container: int


class FakeBridges:
    """Open WebSocket bridges by session, and who was disconnected."""

    def __init__(self) -> None:
        self.open: dict[str, list[Counters]] = {}
        self.closed: list[tuple[str, int]] = []

    def bridges_for_session(self, session_id: str) -> list[Counters]:
        return list(self.open.get(session_id, []))

    def close_user(self, user_id: str, code: int, reason: str) -> int:
        count = 0
        for session_id, bridges in list(self.open.items()):
            mine = [b for b in bridges if b.owner == user_id]
            count += len(mine)
            self.open[session_id] = [b for b in bridges if b.owner != user_id]
        if count:
            self.closed.append((user_id, code))
        return count


class Desk:
    """RelayWeb with the admin API on a loopback port; web sessions for a pupil, a teacher and an
    admin; a read, a write and a revoked token; anna's demo desktop running."""

    def __init__(self, store: SQLiteStore) -> None:
        from twisted.internet import reactor

        self.store = store
        self.engine = FakeProvisioner([IMAGE, "kasm/code:1"])
        self.bridges = FakeBridges()
        self.web_sessions = WebSessions(store, reactor, secure=False, idle=3600, lifetime=86400)
        guard = RequestGuard(self.web_sessions, ORIGIN, ())
        self.sessions = sessions = DesktopSessions(
            store=store, provisioner=self.engine, probe=lambda backend: defer.succeed(True), clock=reactor,
            desktops={"demo": desktop("demo"), "code": desktop("code", image="kasm/code:1")}, instance="test",
            max_per_user=3, start_timeout=5, stop_timeout=1,
        )
        access = DesktopAccess(store, sessions, guard)
        auth = AdminAuth(store, guard, reactor)
        admin = AdminAPI(auth, {
            "sessions": SessionsAdmin(auth, store, sessions, self.bridges).app.resource(),
            "users": UsersAdmin(auth, store, sessions, self.bridges).app.resource(),
        })
        web = RelayWeb(
            guard=guard, roles=Roles(frozenset({"admins"}), frozenset({"teachers"})), authenticator=Accounts(),
            throttle=LoginThrottle(reactor, 5, 300), api=UserAPI(store, sessions, guard), access=access,
            assets=AssetRelay(reactor), sessions=sessions, store=store, admin=admin,
            bridges=DesktopBridgeFactory(access.resolve_upgrade, reactor=reactor, url="ws://127.0.0.1:8080",
                                         max_message_size=1 << 20, ping_interval=30, open_timeout=5),
        )
        self.port = reactor.listenTCP(0, Site(web.app.resource()), interface="127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port.getHost().port}"
        self.http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
        self.anna_session = ""

    async def prepare(self) -> None:
        for user in PEOPLE.values():
            await self.store.add_web_session(WebSession(token_hash(f"cookie-of-{user.user_id}"), user.user_id,
                                                        user.display_name, user.groups, 1e12, 1e12, user.role))
            await self.store.user_signed_in(SeenUser(user.user_id, user.display_name, user.groups, user.role,
                                                     100.0, 100.0 + len(user.user_id)))
        for name, scope in (("mon", "read"), ("ops", "write"), ("old", "write")):
            token = {"mon": "read-token", "ops": "write-token", "old": "revoked-token"}[name]
            await self.store.add_admin_token(AdminToken(name, token_hash(token), scope, 1.0))
        await self.store.revoke_admin_token("old", 2.0)
        self.anna_session = (await self.start("anna")).id
        self.bridges.open[self.anna_session] = [Counters("anna", 1000, 20), Counters("anna", 500, 5)]

    async def start(self, user: str, desktop_name: str = "demo") -> DesktopSession:
        session, _ = await self.sessions.start(PEOPLE[user], desktop_name)
        while self.sessions.working():
            for working in self.sessions.working():
                await working
        return await self.store.get_session(session.id)

    def headers(self, who: str, origin: str | None) -> dict[str, str]:
        headers = {} if origin is None else {"Origin": origin}
        if who in COOKIES:
            headers["Cookie"] = f"{self.web_sessions.cookie_name.decode()}=cookie-of-{COOKIES[who]}"
        elif who in TOKENS:
            headers["Authorization"] = f"Bearer {TOKENS[who]}"
        return headers

    async def call(
        self, method: str, path: str, who: str = "admin", body: Any = None, *, origin: str | None = ORIGIN,
        raw: bytes | None = None, content_type: str = "application/json",
    ) -> tuple[int, dict[str, str], Any]:
        headers = self.headers(who, origin)
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            headers["Content-Type"] = content_type
        response = await self.http.request(method, self.url + path, headers=headers, data=data)
        answer = {k.decode().lower(): v[0].decode() for k, v in response.headers.getAllRawHeaders()}
        text = await response.content()
        return response.code, answer, json.loads(text) if text else None

    async def snapshot(self) -> Any:
        """Everything an admin call could change."""
        sessions = await self.store.sessions_in(QUEUED, STARTING, READY, STOPPING, STOPPED, FAILED)
        signed_in = {u: await self.store.count_web_sessions(u) for u in PEOPLE}
        return (sessions, signed_in, await self.store.audit_trail(), dict(self.engine.containers),
                list(self.bridges.closed))


@pytest_twisted.async_yield_fixture
async def desk(store: SQLiteStore) -> AsyncIterator[Desk]:
    served = Desk(store)
    await served.prepare()
    yield served
    await served.port.stopListening()


def endpoints(desk: Desk) -> list[tuple[str, str, Any]]:
    """Every admin endpoint of this module, with a body where it takes one."""
    sid = desk.anna_session
    return [
        ("GET", "/api/admin/sessions", None),
        ("GET", f"/api/admin/sessions/{sid}", None),
        ("DELETE", f"/api/admin/sessions/{sid}", None),
        ("POST", "/api/admin/sessions/stop", {"user": "anna"}),
        ("GET", "/api/admin/users", None),
        ("GET", "/api/admin/users/anna", None),
        ("POST", "/api/admin/users/anna/sign-out", None),
    ]


ENDPOINT_NAMES = ["list-sessions", "get-session", "stop-session", "stop-many", "list-users", "get-user", "sign-out"]


@pytest.mark.parametrize("who", ROLES)
@pytest.mark.parametrize("endpoint", range(len(ENDPOINT_NAMES)), ids=ENDPOINT_NAMES)
@pytest_twisted.ensureDeferred
async def test_every_endpoint_answers_each_kind_of_caller_as_it_should(desk: Desk, endpoint: int, who: str) -> None:
    method, path, body = endpoints(desk)[endpoint]
    writes = method != "GET"
    before = await desk.snapshot()
    status, headers, answer = await desk.call(method, path, who, body)
    if who in ("none", "pupil", "teacher"):
        # Exactly what a path that does not exist answers: nothing says the admin API is there.
        _, _, missing = await desk.call(method, "/api/no-such-thing", who, body)
        assert status == 404 and {**answer, "instance": ""} == {**missing, "instance": ""}
        assert answer["type"] == PROBLEM + "no-such-page"
    elif who in ("token-revoked", "token-wrong"):
        assert status == 401 and answer["type"] == PROBLEM + "invalid-token"
        assert headers["www-authenticate"].startswith("Bearer")
    elif who == "token-read" and writes:
        assert status == 403 and answer["type"] == PROBLEM + "insufficient-scope"
    else:
        assert status == 200, answer
        assert headers["content-type"] == "application/json"
        if writes:
            return
    if not (status == 200 and writes):
        assert await desk.snapshot() == before


@pytest.mark.parametrize("who", ["none", "pupil", "teacher", "token-wrong"])
@pytest.mark.parametrize("method, path", [
    ("GET", "/api/admin/"), ("GET", "/api/admin/nothing"), ("PUT", "/api/admin/sessions"),
    ("PATCH", "/api/admin/users/anna"), ("GET", "/api/admin/desktops"), ("OPTIONS", "/api/admin/sessions"),
    ("GET", "/api/admin/sessions/x/y/z"),
])
@pytest_twisted.ensureDeferred
async def test_probing_admin_paths_teaches_outsiders_nothing(desk: Desk, who: str, method: str, path: str) -> None:
    status, _, answer = await desk.call(method, path, who)
    if who == "token-wrong":
        assert status == 401
        return
    _, _, missing = await desk.call(method, "/api/no-such-thing", who)
    assert status == 404 and answer["type"] == missing["type"] == PROBLEM + "no-such-page"
    assert answer["title"] == missing["title"]


@pytest.mark.parametrize("method, path", [("GET", "/api/admin/nothing"), ("GET", "/api/admin/"),
                                          ("PUT", "/api/admin/sessions"), ("GET", "/api/admin/sessions/a/b")])
@pytest_twisted.ensureDeferred
async def test_unknown_admin_paths_are_404_problems_for_admins_too(desk: Desk, method: str, path: str) -> None:
    status, headers, answer = await desk.call(method, path, "token-write")
    assert status in (404, 405) and headers["content-type"] == "application/problem+json"
    assert answer["type"] in (PROBLEM + "no-such-page", PROBLEM + "method-not-allowed")


@pytest.mark.parametrize("origin", [None, "https://evil.example", "http://127.0.0.1:8081"])
@pytest_twisted.ensureDeferred
async def test_an_admins_browser_must_send_the_relays_origin_to_change_anything(desk: Desk, origin: str | None) -> None:
    before = await desk.snapshot()
    for method, path, body in endpoints(desk):
        status, _, answer = await desk.call(method, path, "admin", body, origin=origin)
        if method == "GET":
            assert status == 200
        else:
            assert status == 403 and answer["type"] == PROBLEM + "cross-origin-request"
    assert await desk.snapshot() == before


@pytest_twisted.ensureDeferred
async def test_scripts_need_no_origin_and_tokens_last_use_is_noted(desk: Desk) -> None:
    status, _, _ = await desk.call("GET", "/api/admin/sessions", "token-read", origin=None)
    assert status == 200
    (mon,) = [t for t in await desk.store.admin_tokens() if t.name == "mon"]
    assert mon.last_used is not None and mon.last_used > 2.0


@pytest_twisted.ensureDeferred
async def test_a_session_in_detail_has_its_connections_and_bytes_but_no_secrets(desk: Desk) -> None:
    session = await desk.store.get_session(desk.anna_session)
    status, _, view = await desk.call("GET", f"/api/admin/sessions/{session.id}", "token-read")
    assert status == 200
    assert view["owner"] == "anna" and view["desktop"] == "demo" and view["state"] == "ready"
    assert view["container_id"] == session.container_id and view["image"] == IMAGE
    assert view["created"] == session.created and view["ready_at"] == session.ready_at
    assert view["connected_browsers"] == 2
    assert (view["bytes_to_browser"], view["bytes_to_container"]) == (1500, 25)
    assert "vnc_password" not in view and "host_port" not in view
    text = json.dumps(view)
    assert session.vnc_password not in text and str(session.host_port) not in text
    status, _, problem = await desk.call("GET", "/api/admin/sessions/nope", "token-read")
    assert status == 404 and problem["type"] == PROBLEM + "no-such-session"


async def add_session(desk: Desk, sid: str, owner: str, state: str, created: float, *, desktop_name: str = "demo",
                      ready_at: float | None = None, last_input: float | None = None) -> None:
    await desk.store.add_session(DesktopSession(
        id=sid, owner=owner, desktop=desktop_name, state=state, reason=None, container_id=None, host_port=None,
        vnc_password="pw-" + sid, created=created, updated=created, ready_at=ready_at,
    ))
    if last_input is not None:
        await desk.store.record_activity({sid: (last_input, None)})


async def ids(desk: Desk, query: str) -> list[str]:
    status, _, page = await desk.call("GET", "/api/admin/sessions?" + query, "token-read")
    assert status == 200, page
    return [item["id"] for item in page["items"]]


@pytest_twisted.ensureDeferred
async def test_session_filters(desk: Desk) -> None:
    from twisted.internet import reactor

    now = reactor.seconds()
    await add_session(desk, "old-stopped", "ben", STOPPED, 1000.0)
    await add_session(desk, "ben-code", "ben", READY, 2000.0, desktop_name="code", ready_at=now - 600,
                      last_input=now - 30)
    await add_session(desk, "ben-idle", "ben", READY, 3000.0, ready_at=now - 7200)
    await add_session(desk, "tina-q", "tina", QUEUED, 4000.0)
    anna = desk.anna_session
    assert await ids(desk, "") == [anna, "tina-q", "ben-idle", "ben-code", "old-stopped"]
    assert await ids(desk, "user=ben") == ["ben-idle", "ben-code", "old-stopped"]
    assert await ids(desk, "desktop=code") == ["ben-code"]
    assert await ids(desk, "state=ready") == [anna, "ben-idle", "ben-code"]
    assert await ids(desk, "state=ready&user=ben&desktop=demo") == ["ben-idle"]
    assert await ids(desk, "started_before=3000") == ["ben-code", "old-stopped"]
    assert await ids(desk, "started_after=1000&started_before=4000.5") == ["tina-q", "ben-idle", "ben-code"]
    assert await ids(desk, "started_before=1970-01-01T00:50:00Z") == ["ben-code", "old-stopped"]
    assert await ids(desk, "started_before=1970-01-01T01:50:00%2B01:00") == ["ben-code", "old-stopped"]
    # Idle: last input, or readiness when nobody typed; anna's session became ready just now.
    assert await ids(desk, "idle_longer_than=60") == ["ben-idle"]
    assert await ids(desk, "idle_longer_than=10") == ["ben-idle", "ben-code"]
    assert await ids(desk, "user=nobody") == []
    _, _, page = await desk.call("GET", "/api/admin/sessions?state=queued", "token-read")
    assert page["items"][0]["position"] == 1


@pytest_twisted.ensureDeferred
async def test_fresh_input_in_memory_counts_for_the_idle_filter(desk: Desk) -> None:
    from twisted.internet import reactor

    await add_session(desk, "ben-idle", "ben", READY, 3000.0, ready_at=reactor.seconds() - 7200)
    desk.sessions.activity.touch("ben-idle")
    assert await ids(desk, "idle_longer_than=60") == []
    _, _, view = await desk.call("GET", "/api/admin/sessions/ben-idle", "token-read")
    assert view["last_input"] is not None


@pytest_twisted.ensureDeferred
async def test_lists_are_paged_newest_first_with_an_opaque_cursor(desk: Desk) -> None:
    for n in range(5):
        await add_session(desk, f"s{n}", "ben", STOPPED, 100.0 + n // 2)  # two share each time: ties by id
    seen: list[str] = []
    query = "user=ben&limit=2"
    while True:
        status, _, page = await desk.call("GET", "/api/admin/sessions?" + query, "token-read")
        assert status == 200 and len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        query = f"user=ben&limit=2&cursor={page['next_cursor']}"
    assert seen == ["s4", "s3", "s2", "s1", "s0"]
    status, _, page = await desk.call("GET", "/api/admin/users?limit=2", "token-read")
    assert [u["id"] for u in page["items"]] == ["tina", "root"] and page["next_cursor"]
    _, _, rest = await desk.call("GET", f"/api/admin/users?cursor={page['next_cursor']}", "token-read")
    assert [u["id"] for u in rest["items"]] == ["anna", "ben"] and rest["next_cursor"] is None


def cursor_of(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize("path, status, slug, parameter", [
    ("/api/admin/sessions?owner=anna", 400, "unknown-parameter", "owner"),
    ("/api/admin/sessions?user=anna&stat=ready", 400, "unknown-parameter", "stat"),
    ("/api/admin/users?user=anna", 400, "unknown-parameter", "user"),
    ("/api/admin/sessions/ID?wait=ready", 400, "unknown-parameter", "wait"),
    ("/api/admin/sessions?limit=0", 400, "invalid-parameter", "limit"),
    ("/api/admin/sessions?limit=501", 400, "invalid-parameter", "limit"),
    ("/api/admin/users?limit=1000", 400, "invalid-parameter", "limit"),
    ("/api/admin/sessions?limit=ten", 400, "invalid-parameter", "limit"),
    ("/api/admin/sessions?limit=1&limit=2", 400, "invalid-parameter", "limit"),
    ("/api/admin/sessions?state=running", 400, "invalid-parameter", "state"),
    ("/api/admin/sessions?started_before=yesterday", 400, "invalid-parameter", "started_before"),
    ("/api/admin/sessions?started_after=2026-12-01T10:00:00", 400, "invalid-parameter", "started_after"),
    ("/api/admin/sessions?idle_longer_than=-5", 400, "invalid-parameter", "idle_longer_than"),
    ("/api/admin/sessions?idle_longer_than=nan", 400, "invalid-parameter", "idle_longer_than"),
    ("/api/admin/sessions?user=%FF", 400, "invalid-parameter", "user"),
    ("/api/admin/sessions?cursor=not-a-cursor!", 400, "invalid-cursor", None),
    ("/api/admin/sessions?cursor=" + cursor_of([1.0]), 400, "invalid-cursor", None),
    ("/api/admin/sessions?cursor=" + cursor_of(["x", "y"]), 400, "invalid-cursor", None),
    ("/api/admin/sessions?cursor=" + cursor_of([True, "y"]), 400, "invalid-cursor", None),
    ("/api/admin/users?cursor=" + cursor_of({"a": 1}), 400, "invalid-cursor", None),
    ("/api/admin/users?cursor=%FF", 400, "invalid-parameter", "cursor"),
])
@pytest_twisted.ensureDeferred
async def test_bad_list_parameters_get_a_precise_problem(
    desk: Desk, path: str, status: int, slug: str, parameter: str | None
) -> None:
    path = path.replace("/ID?", f"/{desk.anna_session}?")
    got, headers, problem = await desk.call("GET", path, "token-read")
    assert (got, problem["type"]) == (status, PROBLEM + slug), problem
    assert headers["content-type"] == "application/problem+json" and problem.get("parameter") == parameter


@pytest.mark.parametrize("who, actor", [("token-write", "token:ops"), ("admin", "user:root")])
@pytest_twisted.ensureDeferred
async def test_stopping_a_session_ends_it_for_reason_admin_and_is_audited(desk: Desk, who: str, actor: str) -> None:
    sid = desk.anna_session
    status, _, view = await desk.call("DELETE", f"/api/admin/sessions/{sid}", who)
    assert status == 200 and view["state"] == "stopped"
    assert view["end_reason"] == "admin" and view["reason"] == "Stopped by an administrator."
    assert desk.engine.containers == {}
    stored = await desk.store.get_session(sid)
    assert stored.state == STOPPED and stored.end_reason == "admin"
    trail = [(a["actor"], a["action"], a["target"]) for a in await desk.store.audit_trail()]
    assert (actor, "admin-stop", sid) in trail and (actor, "stop", sid) in trail


@pytest_twisted.ensureDeferred
async def test_stopping_a_queued_start_cancels_it(desk: Desk) -> None:
    await add_session(desk, "q1", "ben", QUEUED, 5.0)
    status, _, view = await desk.call("DELETE", "/api/admin/sessions/q1", "token-write")
    assert status == 200 and view["state"] == "stopped" and view["end_reason"] == "admin"


@pytest.mark.parametrize("state", [STOPPED, FAILED, STOPPING])
@pytest_twisted.ensureDeferred
async def test_stopping_an_ended_session_is_409_and_changes_nothing(desk: Desk, state: str) -> None:
    await add_session(desk, "ended", "ben", state, 5.0)
    before = await desk.snapshot()
    status, _, problem = await desk.call("DELETE", "/api/admin/sessions/ended", "token-write")
    assert status == 409 and problem["type"] == PROBLEM + "already-ended" and problem["state"] == state
    assert await desk.snapshot() == before


@pytest_twisted.ensureDeferred
async def test_stopping_twice_answers_409_the_second_time(desk: Desk) -> None:
    path = f"/api/admin/sessions/{desk.anna_session}"
    assert (await desk.call("DELETE", path, "token-write"))[0] == 200
    before = await desk.snapshot()
    status, _, problem = await desk.call("DELETE", path, "token-write")
    assert status == 409 and problem["type"] == PROBLEM + "already-ended"
    assert await desk.snapshot() == before
    status, _, problem = await desk.call("DELETE", "/api/admin/sessions/nope", "token-write")
    assert status == 404 and problem["type"] == PROBLEM + "no-such-session"


@pytest_twisted.ensureDeferred
async def test_stop_many_by_group_user_or_desktop_stops_exactly_those(desk: Desk) -> None:
    ben_demo = (await desk.start("ben")).id
    ben_code = (await desk.start("ben", "code")).id
    tina_code = (await desk.start("tina", "code")).id
    await add_session(desk, "ben-old", "ben", STOPPED, 5.0)
    status, _, answer = await desk.call("POST", "/api/admin/sessions/stop", "token-write", {"group": "7b"})
    assert status == 200 and answer == {"stopped": [desk.anna_session], "stopping": []}
    status, _, answer = await desk.call("POST", "/api/admin/sessions/stop", "admin", {"desktop": "code"})
    assert status == 200 and sorted(answer["stopped"]) == sorted([ben_code, tina_code])
    status, _, answer = await desk.call("POST", "/api/admin/sessions/stop", "token-write", {"user": "ben"})
    assert answer["stopped"] == [ben_demo]
    status, _, answer = await desk.call("POST", "/api/admin/sessions/stop", "token-write", {"group": "nobody"})
    assert status == 200 and answer["stopped"] == []
    assert desk.engine.containers == {}
    for sid in (desk.anna_session, ben_demo, ben_code, tina_code):
        assert (await desk.store.get_session(sid)).end_reason == "admin"
    many = [(a["actor"], a["target"]) for a in await desk.store.audit_trail() if a["action"] == "admin-stop-many"]
    assert many == [("token:ops", "group:nobody"), ("token:ops", "user:ben"), ("user:root", "desktop:code"),
                    ("token:ops", "group:7b")]


@pytest.mark.parametrize("raw, content_type, status, slug", [
    (b'{"user": "anna"}', "text/plain", 415, "unsupported-media-type"),
    (b"", "application/json", 400, "malformed-json"),
    (b'{"user": ', "application/json", 400, "malformed-json"),
    (b"\xff\xfe", "application/json", 400, "malformed-json"),
    (b"{}", "application/json", 422, "invalid-request"),
    (b'{"user": "anna", "desktop": "demo"}', "application/json", 422, "invalid-request"),
    (b'{"user": ""}', "application/json", 422, "invalid-request"),
    (b'{"user": 7}', "application/json", 422, "invalid-request"),
    (b'{"owner": "anna"}', "application/json", 422, "invalid-request"),
    (b'["anna"]', "application/json", 422, "invalid-request"),
    (b'{"user": "' + b"a" * 20000 + b'"}', "application/json", 413, "body-too-large"),
])
@pytest_twisted.ensureDeferred
async def test_bad_stop_many_bodies_are_refused_and_change_nothing(
    desk: Desk, raw: bytes, content_type: str, status: int, slug: str
) -> None:
    before = await desk.snapshot()
    got, _, problem = await desk.call("POST", "/api/admin/sessions/stop", "token-write", raw=raw,
                                      content_type=content_type)
    assert (got, problem["type"]) == (status, PROBLEM + slug)
    assert await desk.snapshot() == before


@pytest_twisted.ensureDeferred
async def test_users_are_listed_and_shown_with_their_sessions(desk: Desk) -> None:
    status, _, page = await desk.call("GET", "/api/admin/users", "token-read")
    assert status == 200 and page["next_cursor"] is None
    assert page["items"][-1] == {"id": "ben", "name": "Ben", "groups": ["7c", "pupils"], "role": "pupil",
                                 "first_seen": 100.0, "last_sign_in": 103.0}
    status, _, anna = await desk.call("GET", "/api/admin/users/anna", "token-read")
    assert status == 200 and anna["groups"] == ["7b", "pupils"]
    assert [s["id"] for s in anna["sessions"]] == [desk.anna_session]
    assert anna["sessions"][0]["connected_browsers"] == 2 and "vnc_password" not in anna["sessions"][0]
    status, _, problem = await desk.call("GET", "/api/admin/users/nobody", "token-read")
    assert status == 404 and problem["type"] == PROBLEM + "no-such-user"


@pytest_twisted.ensureDeferred
async def test_signing_a_user_out_ends_every_web_session_and_closes_their_desktops_sockets(desk: Desk) -> None:
    await desk.store.add_web_session(WebSession(token_hash("second-browser"), "anna", "Anna", frozenset(), 1e12, 1e12))
    status, _, answer = await desk.call("POST", "/api/admin/users/anna/sign-out", "token-write")
    assert status == 200
    assert answer == {"user": "anna", "web_sessions_ended": 2, "connections_closed": 2}
    assert await desk.store.count_web_sessions("anna") == 0 and desk.bridges.closed == [("anna", CLOSE_SIGNED_OUT)]
    status, _, _ = await desk.call("GET", "/api/me", "pupil")
    assert status == 401
    # Their desktop keeps running: signing out is not stopping.
    assert (await desk.store.get_session(desk.anna_session)).state == READY
    (line,) = [a for a in await desk.store.audit_trail() if a["action"] == "admin-sign-out"]
    assert (line["actor"], line["target"]) == ("token:ops", "anna")
    before = await desk.snapshot()
    status, _, problem = await desk.call("POST", "/api/admin/users/nobody/sign-out", "token-write")
    assert status == 404 and problem["type"] == PROBLEM + "no-such-user"
    assert await desk.snapshot() == before


@pytest_twisted.ensureDeferred
async def test_every_sign_in_records_the_users_name_groups_and_role(desk: Desk) -> None:
    response = await desk.http.post(desk.url + "/login", data={"username": "tina", "password": "pw"},
                                    headers={"Origin": ORIGIN}, allow_redirects=False)
    assert response.code == 303
    tina = await desk.store.seen_user("tina")
    assert tina.role == "teacher" and tina.groups == {"teachers"} and tina.first_seen == 100.0
    assert tina.last_sign_in > 1e9
    response = await desk.http.post(desk.url + "/login", data={"username": "root", "password": "pw"},
                                    headers={"Origin": ORIGIN}, allow_redirects=False)
    assert (await desk.store.seen_user("root")).role == "admin"


@pytest_twisted.ensureDeferred
async def test_without_an_admin_api_its_paths_answer_404(store: SQLiteStore) -> None:
    from twisted.internet import reactor

    web_sessions = WebSessions(store, reactor, secure=False, idle=3600, lifetime=86400)
    guard = RequestGuard(web_sessions, ORIGIN, ())
    sessions = DesktopSessions(
        store=store, provisioner=FakeProvisioner([IMAGE]), probe=lambda backend: defer.succeed(True), clock=reactor,
        desktops={"demo": desktop("demo")}, instance="test", max_per_user=1, start_timeout=5, stop_timeout=1,
    )
    access = DesktopAccess(store, sessions, guard)
    web = RelayWeb(
        guard=guard, roles=Roles(frozenset(), frozenset()), authenticator=Accounts(),
        throttle=LoginThrottle(reactor, 5, 300), api=UserAPI(store, sessions, guard), access=access,
        assets=AssetRelay(reactor), sessions=sessions, store=store,
        bridges=DesktopBridgeFactory(access.resolve_upgrade, reactor=reactor, url="ws://127.0.0.1:8080",
                                     max_message_size=1 << 20, ping_interval=30, open_timeout=5),
    )
    port = reactor.listenTCP(0, Site(web.app.resource()), interface="127.0.0.1")
    try:
        http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
        response = await http.get(f"http://127.0.0.1:{port.getHost().port}/api/admin/sessions")
        assert response.code == 404
        assert json.loads(await response.content())["type"] == PROBLEM + "no-such-page"
    finally:
        await port.stopListening()
