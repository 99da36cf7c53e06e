"""The session page's route, /desktop/ID/ without the client's query: who gets the page, for which
states, and with which headers. Through RelayWeb on a loopback Site, with the in-memory engine."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator

import pytest
import pytest_twisted
from fakes import IMAGE, FakeProvisioner, desktop
from treq.client import HTTPClient
from twisted.internet import defer
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.server import Site

from desktop_relay.auth.roles import Roles
from desktop_relay.auth.throttle import LoginThrottle
from desktop_relay.auth.websessions import WebSessions, token_hash
from desktop_relay.lifecycle import DesktopSessions
from desktop_relay.relay.assets import AssetRelay
from desktop_relay.relay.bridge import DesktopBridgeFactory
from desktop_relay.store import DesktopSession, SQLiteStore, WebSession
from desktop_relay.web.access import DesktopAccess
from desktop_relay.web.api import UserAPI, client_url
from desktop_relay.web.app import RelayWeb
from desktop_relay.web.guard import RequestGuard

ORIGIN = "http://127.0.0.1:8080"


class NoPasswords:
    """A sign-in method that never signs anyone in: these tests come with a web session."""

    def authenticate(self, username: str, password: str) -> defer.Deferred:
        return defer.succeed(None)


class Pages:
    """RelayWeb on a loopback port, with a signed-in cookie for anna."""

    def __init__(self, store: SQLiteStore) -> None:
        from twisted.internet import reactor

        self.store = store
        self.web_sessions = WebSessions(store, reactor, secure=False, idle=3600, lifetime=86400)
        guard = RequestGuard(self.web_sessions, ORIGIN, ())
        sessions = DesktopSessions(
            store=store, provisioner=FakeProvisioner([IMAGE]), probe=lambda backend: defer.succeed(True),
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
        self.port = reactor.listenTCP(0, Site(web.app.resource()), interface="127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port.getHost().port}"
        self.http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
        self.cookie = ""

    async def sign_in(self, user: str = "anna") -> None:
        token = f"token-of-{user}"
        await self.store.add_web_session(WebSession(token_hash(token), user, user.title(), frozenset(), 1e12, 1e12))
        self.cookie = f"{self.web_sessions.cookie_name.decode()}={token}"

    async def add(self, session_id: str, state: str, owner: str = "anna", host_port: int | None = None) -> None:
        await self.store.add_session(DesktopSession(
            id=session_id, owner=owner, desktop="demo", state=state, reason=None, container_id=None,
            host_port=host_port, vnc_password="secret", created=1.0, updated=1.0,
        ))

    async def get(self, path: str) -> tuple[int, dict[str, str], str]:
        response = await self.http.get(self.url + path, headers={"Cookie": self.cookie}, allow_redirects=False)
        headers = {k.decode().lower(): v[0].decode() for k, v in response.headers.getAllRawHeaders()}
        return response.code, headers, (await response.content()).decode()


@pytest_twisted.async_yield_fixture
async def pages(store: SQLiteStore) -> AsyncIterator[Pages]:
    served = Pages(store)
    yield served
    await served.port.stopListening()


@pytest.mark.parametrize("state", ["queued", "starting", "ready", "stopping", "stopped", "failed"])
@pytest_twisted.ensureDeferred
async def test_the_owner_gets_the_session_page_whatever_the_state(pages: Pages, state: str) -> None:
    await pages.sign_in()
    await pages.add("s1", state)
    status, headers, body = await pages.get("/desktop/s1/")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    assert 'data-session="s1"' in body and 'id="bar"' in body and "/static/session.js" in body
    # The page may not be framed by anyone; it frames only its own origin.
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["cache-control"] == "no-store"


@pytest_twisted.ensureDeferred
async def test_someone_elses_session_is_404_like_one_that_does_not_exist(pages: Pages) -> None:
    await pages.sign_in()
    await pages.add("bobs", "ready", owner="bob")
    for path in ("/desktop/bobs/", "/desktop/nothing/"):
        status, headers, body = await pages.get(path)
        assert status == 404 and headers["content-type"] == "application/problem+json"
        assert "bobs" not in body.replace("/desktop/bobs/", "")


@pytest_twisted.ensureDeferred
async def test_without_a_sign_in_the_page_sends_to_the_sign_in_and_back(pages: Pages) -> None:
    await pages.add("s1", "starting")
    status, headers, _ = await pages.get("/desktop/s1/")
    assert status == 303 and headers["location"] == "/login?next=%2Fdesktop%2Fs1%2F"


@pytest_twisted.ensureDeferred
async def test_the_clients_own_address_is_still_relayed_not_the_page(pages: Pages) -> None:
    await pages.sign_in()
    await pages.add("s1", "starting")
    status, _, body = await pages.get("/desktop/s1/?path=desktop/s1/websockify&autoconnect=1")
    assert status == 409 and "still starting" in body


@pytest.mark.parametrize("state", ["starting", "ready"])
@pytest_twisted.ensureDeferred
async def test_a_ready_desktops_page_frames_its_client_from_the_start(pages: Pages, state: str) -> None:
    await pages.sign_in()
    await pages.add("s1", state, host_port=40000)
    status, _, body = await pages.get("/desktop/s1/")
    frame = re.search(r"<iframe id=\"desktop\"[^>]*>", body)
    assert status == 200 and frame is not None
    if state == "ready":
        # The frame loads the client while the page's script is still on its way.
        src = html.unescape(re.search(r'src="([^"]+)"', frame.group(0)).group(1))  # type: ignore[union-attr]
        assert src == client_url("s1") and "hidden" not in frame.group(0)
    else:
        # The script loads it once the start is done (from the session's client_url).
        assert "src=" not in frame.group(0) and "hidden" in frame.group(0)
