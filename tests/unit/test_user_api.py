"""The user API's error answers, through a real Site on loopback, with the in-memory engine."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from fakes import IMAGE, FakeProvisioner, desktop
from treq.client import HTTPClient
from twisted.internet import defer
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.server import Site

from desktop_relay.auth.websessions import WebSessions, token_hash
from desktop_relay.capacity import CapacityLimits
from desktop_relay.lifecycle import DesktopSessions
from desktop_relay.store import SQLiteStore, WebSession
from desktop_relay.web.api import UserAPI
from desktop_relay.web.guard import RequestGuard

ORIGIN = "http://127.0.0.1:8080"


class API:
    """A UserAPI served on a loopback port, and a signed-in cookie for it."""

    def __init__(self, store: SQLiteStore, engine: Any) -> None:
        from twisted.internet import reactor

        self.engine = engine
        self.store = store
        self.web_sessions = WebSessions(store, reactor, secure=False, idle=3600, lifetime=86400)
        guard = RequestGuard(self.web_sessions, ORIGIN, ())
        self.sessions = sessions = DesktopSessions(
            store=store, provisioner=engine, probe=lambda backend: defer.succeed(True), clock=reactor,
            desktops={"demo": desktop("demo")}, instance="test", max_per_user=2, start_timeout=5,
            stop_timeout=1,
        )
        self.port = reactor.listenTCP(0, Site(UserAPI(store, sessions, guard).app.resource()), interface="127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port.getHost().port}"
        self.http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
        self.cookie = ""

    async def sign_in(self) -> None:
        from desktop_relay.auth.websessions import token_hash
        from desktop_relay.store import WebSession

        token = "a-test-token"
        await self.store.add_web_session(WebSession(token_hash(token), "anna", "Anna", frozenset(), 1e12, 1e12))
        self.cookie = f"{self.web_sessions.cookie_name.decode()}={token}"

    async def settle(self) -> None:
        while self.sessions.working():
            for working in self.sessions.working():
                await working

    async def get(self, path: str) -> tuple[int, dict[str, Any], Any]:
        response = await self.http.get(self.url + path, headers={"Cookie": self.cookie})
        headers = {k.decode().lower(): v[0].decode() for k, v in response.headers.getAllRawHeaders()}
        return response.code, headers, json.loads(await response.content())

    async def post(self, path: str, body: Any, origin: str = ORIGIN) -> tuple[int, dict[str, Any], Any]:
        response = await self.http.post(
            self.url + path, data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Origin": origin, "Cookie": self.cookie},
        )
        headers = {k.decode().lower(): v[0].decode() for k, v in response.headers.getAllRawHeaders()}
        return response.code, headers, json.loads(await response.content())


@pytest_twisted.async_yield_fixture
async def api(store: SQLiteStore) -> AsyncIterator[API]:
    served = API(store, FakeProvisioner([IMAGE]))
    yield served
    await served.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_without_a_sign_in_the_api_answers_401(api: API) -> None:
    status, headers, body = await api.post("/sessions", {"desktop": "demo"})
    assert status == 401 and headers["content-type"] == "application/problem+json"
    assert body["type"] == "urn:desktop-relay:problem:not-signed-in" and body["instance"] == "/sessions"


@pytest_twisted.ensureDeferred
async def test_cross_site_post_is_refused_before_anything_happens(api: API) -> None:
    await api.sign_in()
    status, _, body = await api.post("/sessions", {"desktop": "demo"}, origin="https://evil.example")
    assert status == 403 and body["type"].endswith("cross-origin-request")
    assert api.engine.containers == {}


@pytest_twisted.ensureDeferred
async def test_start_while_engine_down_is_queued_not_refused(api: API) -> None:
    await api.sign_in()
    api.engine.engine_down = True
    status, _, body = await api.post("/sessions", {"desktop": "demo"})
    assert status == 202 and body["state"] in ("starting", "queued")
    await api.settle()
    (session,) = await api.store.sessions_of("anna")
    assert session.state == "queued" and api.engine.containers == {}


@pytest_twisted.ensureDeferred
async def test_running_desktop_while_engine_down_is_503_with_retry_after(api: API) -> None:
    await api.sign_in()
    await api.post("/sessions", {"desktop": "demo"})
    await api.settle()
    api.sessions.engine.lost("gone")
    status, headers, body = await api.post("/sessions", {"desktop": "demo"})
    assert status == 503 and headers["retry-after"] == "30"
    assert body["type"].endswith("container-engine-unavailable")
    status, _, view = await api.get(f"/sessions/{(await api.store.sessions_of('anna'))[0].id}")
    assert status == 200 and view["state"] == "interrupted" and view["engine"] == "unreachable"


class BrokenEngine(FakeProvisioner):
    """An engine whose start raises something nobody planned for: a bug."""

    def start(self, spec: Any) -> defer.Deferred:
        return defer.fail(RuntimeError("boom: secret internals"))


@pytest_twisted.ensureDeferred
async def test_a_bug_while_starting_is_logged_with_its_traceback_and_the_session_fails_without_it(
    store: SQLiteStore, fail_on_logged_errors: list[dict[str, Any]]
) -> None:
    api = API(store, BrokenEngine([IMAGE]))
    try:
        await api.sign_in()
        status, _, body = await api.post("/sessions", {"desktop": "demo"})
        await api.settle()
        _, _, view = await api.get(f"/sessions/{body['id']}")
    finally:
        await api.port.stopListening()
    assert status == 202 and view["state"] == "failed" and view["end_reason"] == "start-failed"
    assert "boom" not in json.dumps(view) and "Traceback" not in json.dumps(view)
    (logged,) = fail_on_logged_errors
    assert "boom: secret internals" in logged["log_failure"].getTraceback()
    fail_on_logged_errors.clear()


@pytest.mark.parametrize("body, status, slug", [
    ({"desktop": "nope"}, 404, "no-such-desktop"),
    ({"desktop": ""}, 422, "invalid-request"),
    (["demo"], 422, "invalid-request"),
])
@pytest_twisted.ensureDeferred
async def test_bad_bodies_get_their_problem(api: API, body: Any, status: int, slug: str) -> None:
    await api.sign_in()
    code, _, problem = await api.post("/sessions", body)
    assert code == status and problem["type"].endswith(slug)


@pytest_twisted.ensureDeferred
async def test_wait_ready_answers_as_soon_as_the_desktop_is_ready(api: API) -> None:
    await api.sign_in()
    probe_answer: defer.Deferred[bool] = defer.Deferred()
    api.sessions._probe = lambda backend: probe_answer
    _, _, started = await api.post("/sessions", {"desktop": "demo"})
    assert started["step"] == "creating" and started["step_since"] == started["updated"]
    waiting = defer.ensureDeferred(api.get(f"/sessions/{started['id']}?wait=ready"))
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    await deferLater(reactor, 0.2, lambda: None)
    assert not waiting.called
    probe_answer.callback(True)
    status, _, view = await waiting
    assert status == 200 and view["state"] == "ready" and view["idle_deadline"] is not None
    assert view["step"] == "ready" and view["step_since"] == view["ready_at"] and view["ending"] is None
    assert view["client_url"].startswith(f"/desktop/{started['id']}/?path=desktop%2F{started['id']}%2Fwebsockify")


@pytest_twisted.ensureDeferred
async def test_full_queue_is_503_with_retry_after_and_writes_nothing(store: SQLiteStore) -> None:
    api = API(store, FakeProvisioner([IMAGE]))
    api.sessions._limits = CapacityLimits(max_total=0, max_queued=1)
    try:
        await api.sign_in()
        status, _, queued = await api.post("/sessions", {"desktop": "demo"})
        assert status == 202 and queued["state"] == "queued" and queued["position"] == 1
        await api.store.add_web_session(WebSession(token_hash("b"), "bert", "Bert", frozenset(), 1e12, 1e12))
        api.cookie = f"{api.web_sessions.cookie_name.decode()}=b"
        status, headers, problem = await api.post("/sessions", {"desktop": "demo"})
        assert status == 503 and headers["retry-after"] == "60" and problem["type"].endswith("queue-full")
        assert await api.store.sessions_of("bert") == []
    finally:
        await api.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_wait_takes_only_ready_or_change(api: API) -> None:
    await api.sign_in()
    _, _, started = await api.post("/sessions", {"desktop": "demo"})
    status, _, problem = await api.get(f"/sessions/{started['id']}?wait=forever")
    assert status == 400 and problem["type"].endswith("invalid-parameter")
    await api.settle()


@pytest_twisted.ensureDeferred
async def test_wait_change_holds_until_the_session_changes_whatever_way_since_is_written(api: API) -> None:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    await api.sign_in()
    _, _, started = await api.post("/sessions", {"desktop": "demo"})
    await api.settle()
    _, _, view = await api.get(f"/sessions/{started['id']}")
    # JavaScript writes a whole-number float without ".0"; the same stamp either way.
    since = format(view["updated"], "f")
    waiting = defer.ensureDeferred(api.get(f"/sessions/{started['id']}?wait=change&since={since}"))
    await deferLater(reactor, 0.2, lambda: None)
    assert not waiting.called
    session = await api.store.get_session(started["id"])
    await api.sessions.stop(session, "anna")
    status, _, changed = await waiting
    assert status == 200 and changed["state"] == "stopped" and changed["now"] >= changed["updated"]
    assert (changed["step"], changed["step_since"]) == (None, None)
    assert changed["ending"] == {"what": "This desktop was stopped by you.", "action": "Start it again when you need it."}
    status, _, problem = await api.get(f"/sessions/{started['id']}?wait=change&since=yesterday")
    assert status == 400 and problem["type"].endswith("invalid-parameter")


@pytest_twisted.ensureDeferred
async def test_a_browser_leaving_a_long_poll_is_forgotten_without_errors(api: API) -> None:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    await api.sign_in()
    _, _, started = await api.post("/sessions", {"desktop": "demo"})
    await api.settle()
    waiting = api.http.get(f"{api.url}/sessions/{started['id']}?wait=change", headers={"Cookie": api.cookie})
    await deferLater(reactor, 0.2, lambda: None)
    assert api.sessions.watch.session_ids() == [started["id"]]
    waiting.cancel()
    await deferLater(reactor, 0.2, lambda: None)
    assert api.sessions.watch.session_ids() == []
    waiting.addErrback(lambda f: None)
