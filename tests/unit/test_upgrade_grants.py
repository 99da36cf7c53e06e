"""Remembered upgrade grants: a reconnect skips the store, and never gets in where the store's
answer would have changed: after a stop, a sign-out, a reload, the web session's expiry, or a
revocation that came while the grant was being checked."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from autobahn.websocket.types import ConnectionRequest
from fakes import IMAGE, FakeProvisioner, desktop
from twisted.internet import defer, task

from desktop_relay.auth import Identity
from desktop_relay.auth.websessions import WebSessions, token_hash
from desktop_relay.backend import Backend
from desktop_relay.lifecycle import DesktopSessions
from desktop_relay.relay.bridge import DesktopBridgeFactory, UpgradeRefused
from desktop_relay.store import SQLiteStore, WebSession
from desktop_relay.web.access import DesktopAccess
from desktop_relay.web.grants import MAX_GRANTS, UpgradeGrants
from desktop_relay.web.guard import RequestGuard

ORIGIN = "http://127.0.0.1:8080"
PUPIL = Identity("pia", "Pia", frozenset({"pupils"}))
BACKEND = Backend("127.0.0.1", 40000, "pw")


def web(user: str = "pia", token: str = "t", created: float = 0.0) -> WebSession:
    return WebSession(token_hash(token), user, user.title(), frozenset(), created, created)


def grants(clock: task.Clock, ttl: float = 60, valid: Any = lambda web, now: True) -> UpgradeGrants:
    return UpgradeGrants(clock, ttl, valid)


DESKTOPS: dict[str, object] = {}


def test_a_grant_is_remembered_for_its_cookie_and_session_only_until_its_ttl() -> None:
    clock = task.Clock()
    remembered = grants(clock, ttl=60)
    remembered.grant(web(), "s1", BACKEND, DESKTOPS, remembered.epoch)
    assert remembered.get(token_hash("t"), "s1", DESKTOPS) is not None
    assert remembered.get(token_hash("other"), "s1", DESKTOPS) is None
    assert remembered.get(token_hash("t"), "s2", DESKTOPS) is None
    clock.advance(60)
    assert remembered.get(token_hash("t"), "s1", DESKTOPS) is None and len(remembered) == 0


def test_a_stop_or_a_sign_out_forgets_at_once_and_only_what_it_concerns() -> None:
    remembered = grants(task.Clock())
    for user, token, session in [("pia", "t", "s1"), ("pia", "t2", "s2"), ("ben", "b", "s3")]:
        remembered.grant(web(user, token), session, BACKEND, DESKTOPS, remembered.epoch)
    remembered.session_revoked("s1")
    assert remembered.get(token_hash("t"), "s1", DESKTOPS) is None
    assert remembered.get(token_hash("t2"), "s2", DESKTOPS) is not None
    remembered.user_revoked("pia")
    assert remembered.get(token_hash("t2"), "s2", DESKTOPS) is None
    assert remembered.get(token_hash("b"), "s3", DESKTOPS) is not None


def test_a_grant_checked_before_a_revocation_is_not_remembered_after_it() -> None:
    remembered = grants(task.Clock())
    checked_at = remembered.epoch
    remembered.session_revoked("s1")  # the stop came while the store was being asked
    remembered.grant(web(), "s1", BACKEND, DESKTOPS, checked_at)
    assert remembered.get(token_hash("t"), "s1", DESKTOPS) is None


def test_a_reload_or_an_expired_web_session_is_a_miss() -> None:
    clock = task.Clock()
    remembered = grants(clock, valid=lambda web, now: now < 10)
    remembered.grant(web(), "s1", BACKEND, DESKTOPS, remembered.epoch)
    assert remembered.get(token_hash("t"), "s1", {"demo": object()}) is None  # a reload's new desktops
    remembered.grant(web(), "s1", BACKEND, DESKTOPS, remembered.epoch)
    clock.advance(10)
    assert remembered.get(token_hash("t"), "s1", DESKTOPS) is None


def test_a_flood_of_cookies_keeps_the_grants_bounded() -> None:
    remembered = grants(task.Clock())
    for n in range(MAX_GRANTS + 10):
        remembered.grant(web(token=str(n)), "s1", BACKEND, DESKTOPS, remembered.epoch)
    assert len(remembered) <= MAX_GRANTS
    assert remembered.get(token_hash(str(MAX_GRANTS + 9)), "s1", DESKTOPS) is not None


class SignInRequest:
    """What WebSessions.begin uses of a request: the cookie it had, and setting the new one."""

    def __init__(self, token: str) -> None:
        self.token = token

    def getCookie(self, name: bytes) -> bytes:
        return self.token.encode()

    def addCookie(self, *args: Any, **kwargs: Any) -> None:
        pass


class Relay:
    """DesktopAccess as service.py wires it, with a counting store and a ready session."""

    def __init__(self, store: SQLiteStore) -> None:
        from twisted.internet import reactor

        self.store = store
        self.clock = task.Clock()
        self.web_sessions = WebSessions(store, self.clock, secure=False, idle=3600, lifetime=86400)
        self.sessions = DesktopSessions(
            store=store, provisioner=FakeProvisioner([IMAGE]), probe=lambda backend: defer.succeed(True),
            clock=reactor, desktops={"demo": desktop("demo")}, instance="test", max_per_user=2,
            start_timeout=5, stop_timeout=1,
            on_session_ended=lambda session_id, reason: self.bridges.close_session(session_id),
        )
        self.access = DesktopAccess(store, self.sessions, RequestGuard(self.web_sessions, ORIGIN, ()))
        self.bridges = DesktopBridgeFactory(self.access.resolve_upgrade, reactor=reactor, url="ws://127.0.0.1:8080",
                                            max_message_size=1 << 20, ping_interval=30, open_timeout=5)
        self.access.remember_grants(self.bridges, self.clock)
        self.store_reads = 0
        for name in ("get_session", "get_web_session"):
            self._count(name)

    def _count(self, name: str) -> None:
        real = getattr(self.store, name)

        def counted(*args: Any) -> Any:
            self.store_reads += 1
            return real(*args)

        setattr(self.store, name, counted)

    async def ready_session(self) -> str:
        await self.store.add_web_session(web(created=self.clock.seconds()))
        session, _ = await self.sessions.start(PUPIL, "demo")
        while self.sessions.working():
            await defer.gatherResults(self.sessions.working())
        return session.id

    async def upgrade(self, session_id: str, token: str = "t") -> int:
        """The status the upgrade gets: 101 when granted."""
        request = ConnectionRequest("tcp4:127.0.0.1:5000", {"cookie": f"desktop-relay={token}"}, "127.0.0.1",
                                    f"/desktop/{session_id}/websockify", {}, 13, ORIGIN, ["binary"], [])
        try:
            await self.access.resolve_upgrade(request)
        except UpgradeRefused as refused:
            return refused.code
        return 101


@pytest_twisted.ensureDeferred
async def test_a_reconnect_is_granted_without_asking_the_store(store: SQLiteStore) -> None:
    relay = Relay(store)
    sid = await relay.ready_session()
    before = relay.store_reads
    assert await relay.upgrade(sid) == 101
    assert relay.store_reads - before == 2  # the web session and the desktop session
    assert await relay.upgrade(sid) == 101
    assert relay.store_reads - before == 2


@pytest.mark.parametrize("revoke", ["stop", "sign-out", "signed-in-again"])
@pytest_twisted.ensureDeferred
async def test_after_a_stop_or_sign_out_the_same_cookie_is_refused_at_once(store: SQLiteStore, revoke: str) -> None:
    relay = Relay(store)
    sid = await relay.ready_session()
    assert await relay.upgrade(sid) == 101
    if revoke == "stop":
        await relay.sessions.stop(await store.get_session(sid), "pia")
        expected = 410
    elif revoke == "sign-out":
        await store.delete_web_session(token_hash("t"))
        relay.bridges.close_user("pia")  # what /logout does after deleting the web session
        expected = 401
    else:
        # The same browser signs in again: its old cookie is replaced, its bridges stay open.
        await relay.web_sessions.begin(SignInRequest("t"), PUPIL)
        expected = 401
    assert await relay.upgrade(sid) == expected


@pytest_twisted.ensureDeferred
async def test_without_remembered_grants_every_upgrade_asks_the_store(store: SQLiteStore) -> None:
    relay = Relay(store)
    relay.access.grants = None
    sid = await relay.ready_session()
    before = relay.store_reads
    assert await relay.upgrade(sid) == 101
    assert await relay.upgrade(sid) == 101
    assert relay.store_reads - before == 4


class RecordingAssets:
    """Stands in for the asset relay: answers which container a file was asked of."""

    def relay(self, request: Any, backend: Backend, path: str, **kwargs: Any) -> defer.Deferred[bytes]:
        return defer.succeed(f"{backend.port} {path}".encode())


@pytest_twisted.ensureDeferred
async def test_the_web_clients_files_share_the_grant_and_lose_it_with_the_session(store: SQLiteStore) -> None:
    from treq.client import HTTPClient
    from twisted.internet import reactor
    from twisted.web.client import Agent, HTTPConnectionPool
    from twisted.web.server import Site

    from desktop_relay.auth.roles import Roles
    from desktop_relay.auth.throttle import LoginThrottle
    from desktop_relay.web.api import UserAPI
    from desktop_relay.web.app import RelayWeb

    relay = Relay(store)
    guard = RequestGuard(relay.web_sessions, ORIGIN, ())
    site = RelayWeb(
        guard=guard, roles=Roles(frozenset(), frozenset()), authenticator=RecordingAssets(),  # type: ignore[arg-type]
        throttle=LoginThrottle(relay.clock, 5, 300), api=UserAPI(store, relay.sessions, guard),
        access=relay.access, assets=RecordingAssets(), bridges=relay.bridges,  # type: ignore[arg-type]
        sessions=relay.sessions, store=store,
    )
    port = reactor.listenTCP(0, Site(site.app.resource()), interface="127.0.0.1")
    http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
    sid = await relay.ready_session()

    async def get(path: str) -> tuple[int, str]:
        response = await http.get(f"http://127.0.0.1:{port.getHost().port}/desktop/{sid}/{path}",
                                  headers={"Cookie": "desktop-relay=t"})
        return response.code, (await response.content()).decode()

    before = relay.store_reads
    assert await get("?path=x") == (200, f"{BACKEND.port} ")  # the client's entry document
    assert relay.store_reads - before == 2
    for name in ("app/ui.js", "core/rfb.js", "app/images/info.svg"):
        assert await get(name) == (200, f"{BACKEND.port} {name}")
    assert relay.store_reads - before == 2  # its files were answered from the grant
    assert await relay.upgrade(sid) == 101 and relay.store_reads - before == 2  # so is its WebSocket
    await relay.sessions.stop(await store.get_session(sid), "pia")
    code, body = await get("app/ui.js")
    await port.stopListening()
    assert code == 410 and "session-ended" in body
