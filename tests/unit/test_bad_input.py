"""Bad input a new admin found: deeply nested JSON and paths that are not UTF-8 once decoded.
Through RelayWeb's root resource on a loopback Site, as the relay serves it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_twisted
from fakes import IMAGE, FakeProvisioner, desktop
from treq.client import HTTPClient
from twisted.internet import defer
from twisted.logger import ILogObserver, LogLevel, formatEvent, globalLogPublisher
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.server import Site
from zope.interface import provider

from desktop_relay.auth.roles import Roles
from desktop_relay.auth.throttle import LoginThrottle
from desktop_relay.auth.websessions import WebSessions, token_hash
from desktop_relay.lifecycle import DesktopSessions
from desktop_relay.relay.assets import AssetRelay
from desktop_relay.relay.bridge import DesktopBridgeFactory
from desktop_relay.store import SQLiteStore, WebSession
from desktop_relay.web.access import DesktopAccess
from desktop_relay.web.api import UserAPI
from desktop_relay.web.app import RelayWeb
from desktop_relay.web.guard import RequestGuard

ORIGIN = "http://127.0.0.1:8080"
# 8,000 levels in 16 KB: what the issue sent to POST /api/sessions.
DEEP = b"[" * 8000 + b"]" * 8000


class NoPasswords:
    def authenticate(self, username: str, password: str) -> defer.Deferred:
        return defer.succeed(None)


class Site_:
    """The relay's root resource on a loopback port, with anna signed in."""

    def __init__(self, store: SQLiteStore) -> None:
        from twisted.internet import reactor

        self.store = store
        self.engine = FakeProvisioner([IMAGE])
        web_sessions = WebSessions(store, reactor, secure=False, idle=3600, lifetime=86400)
        guard = RequestGuard(web_sessions, ORIGIN, ())
        self.sessions = sessions = DesktopSessions(
            store=store, provisioner=self.engine, probe=lambda backend: defer.succeed(True),
            clock=reactor, desktops={"demo": desktop("demo")}, instance="test", max_per_user=2,
            start_timeout=5, stop_timeout=1,
        )
        access = DesktopAccess(store, sessions, guard)
        web = RelayWeb(
            guard=guard, roles=Roles(frozenset(), frozenset()), authenticator=NoPasswords(),
            throttle=LoginThrottle(reactor, 5, 300), api=UserAPI(store, sessions, guard), access=access,
            assets=AssetRelay(reactor), sessions=sessions, store=store,
            bridges=DesktopBridgeFactory(access.resolve_upgrade, reactor=reactor, url="ws://127.0.0.1:8080",
                                         max_message_size=1 << 20, ping_interval=30, open_timeout=5),
        )
        site = Site(web.resource())
        site.displayTracebacks = False
        self.port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port.getHost().port}"
        self.http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
        self.cookie = f"{web_sessions.cookie_name.decode()}=anna-token"

    async def sign_in(self) -> None:
        await self.store.add_web_session(WebSession(token_hash("anna-token"), "anna", "Anna", frozenset(), 1e12, 1e12))

    async def request(self, method: str, path: str, body: bytes | None = None,
                      content_type: str = "application/json") -> tuple[int, dict[str, str], Any]:
        headers = {"Cookie": self.cookie, "Origin": ORIGIN, "Content-Type": content_type}
        response = await self.http.request(method, self.url + path, data=body, headers=headers)
        head = {k.decode().lower(): v[0].decode() for k, v in response.headers.getAllRawHeaders()}
        return response.code, head, json.loads(await response.content())


@pytest_twisted.async_yield_fixture
async def site(store: SQLiteStore) -> AsyncIterator[Site_]:
    served = Site_(store)
    await served.sign_in()
    yield served
    while served.sessions.working():
        for working in served.sessions.working():
            await working
    await served.port.stopListening()


@pytest.fixture
def log_lines() -> Iterator[list[dict]]:
    events: list[dict] = []

    @provider(ILogObserver)
    def observe(event: dict) -> None:
        if event.get("log_level") not in (LogLevel.debug, None) or event.get("isError"):
            events.append(event)

    globalLogPublisher.addObserver(observe)
    yield events
    globalLogPublisher.removeObserver(observe)


@pytest_twisted.ensureDeferred
async def test_deeply_nested_json_is_malformed_json_not_a_500(site: Site_, log_lines: list[dict]) -> None:
    assert len(DEEP) == 16000
    status, headers, body = await site.request("POST", "/api/sessions", DEEP)
    assert status == 400 and headers["content-type"] == "application/problem+json"
    assert body["type"] == "urn:desktop-relay:problem:malformed-json"
    assert not [e for e in log_lines if "log_failure" in e]
    assert await site.store.sessions_of("anna") == [] and site.engine.containers == {}


@pytest.mark.parametrize("levels", [33, 500, 900])
@pytest_twisted.ensureDeferred
async def test_json_nested_deeper_than_the_limit_is_refused_below_the_recursion_limit_too(
    site: Site_, levels: int
) -> None:
    nested = b'{"desktop": "demo", "x": ' + b"[" * levels + b"]" * levels + b"}"
    status, _, body = await site.request("POST", "/api/sessions", nested)
    assert status == 400 and body["type"].endswith("malformed-json") and "32 levels" in body["detail"]


@pytest_twisted.ensureDeferred
async def test_ordinary_bad_bodies_keep_their_precise_problems(site: Site_) -> None:
    assert (await site.request("POST", "/api/sessions", b'{"desktop": "demo"', ))[2]["type"].endswith("malformed-json")
    status, _, body = await site.request("POST", "/api/sessions", b'{"desktop": "demo"}', "text/plain")
    assert status == 415 and body["type"].endswith("unsupported-media-type")
    status, _, body = await site.request("POST", "/api/sessions", b" " * (16 * 1024 + 1))
    assert status == 413 and body["type"].endswith("body-too-large")
    status, _, body = await site.request("POST", "/api/sessions", b'{"desktop": "demo", "x": [[[]]]}')
    assert status == 202 and body["desktop"] == "demo"


@pytest.mark.parametrize("path", ["/api/sessions/%FF", "/desktop/%FF/", "/desktop/%C3%28/websockify", "/%FF"])
@pytest_twisted.ensureDeferred
async def test_a_path_that_is_not_utf8_is_a_problem_and_one_warning(
    site: Site_, log_lines: list[dict], path: str
) -> None:
    status, headers, body = await site.request("GET", path)
    assert status == 400 and headers["content-type"] == "application/problem+json"
    assert body["type"] == "urn:desktop-relay:problem:invalid-path" and body["instance"] == path
    relay_lines = [e for e in log_lines if e.get("log_namespace", "").startswith("desktop_relay")
                   or "log_failure" in e or e.get("isError")]
    assert len(relay_lines) == 1, [formatEvent(e) for e in relay_lines]
    assert relay_lines[0]["log_level"] == LogLevel.warn and "log_failure" not in relay_lines[0]
    assert "not UTF-8" in formatEvent(relay_lines[0]) and path in formatEvent(relay_lines[0])


@pytest_twisted.ensureDeferred
async def test_percent_encoded_utf8_paths_still_route(site: Site_) -> None:
    status, _, body = await site.request("GET", "/api/sessions/%C3%A9t%C3%A9")
    assert status == 404 and body["type"].endswith("no-such-session")


@pytest_twisted.ensureDeferred
async def test_a_host_header_that_is_not_utf8_is_a_problem_and_one_warning(site: Site_, log_lines: list[dict]) -> None:
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
    from twisted.internet.protocol import Protocol

    answer: defer.Deferred[bytes] = defer.Deferred()

    class Raw(Protocol):
        received = b""

        def connectionMade(self) -> None:
            self.transport.write(b"GET /api/me HTTP/1.1\r\nHost: \xff\r\nConnection: close\r\n\r\n")

        def dataReceived(self, data: bytes) -> None:
            self.received += data

        def connectionLost(self, reason: object) -> None:
            answer.callback(self.received)

    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", site.port.getHost().port), Raw())
    head, _, body = (await answer).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"application/problem+json" in head
    assert json.loads(body)["type"].endswith("invalid-host")
    assert [e["log_level"] for e in log_lines if "log_failure" in e or e.get("isError")] == []
    assert any("Host header is not UTF-8" in formatEvent(e) for e in log_lines)
