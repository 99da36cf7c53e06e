"""Where audit lines come from: sign-ins and failed sign-ins (RelayWeb on a loopback Site), and
the browser's address of a desktop connection behind a trusted proxy."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import pytest
import pytest_twisted
from fakes import IMAGE, FakeProvisioner, desktop
from treq.client import HTTPClient
from twisted.internet import defer
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.server import Site

from desktop_relay.auth import Identity
from desktop_relay.auth.oidc import InvalidState, ProviderUnavailable
from desktop_relay.auth.roles import Roles
from desktop_relay.auth.throttle import LoginThrottle
from desktop_relay.auth.websessions import WebSessions
from desktop_relay.lifecycle import DesktopSessions
from desktop_relay.relay.assets import AssetRelay
from desktop_relay.relay.bridge import DesktopBridgeFactory
from desktop_relay.store import SQLiteStore
from desktop_relay.web.access import DesktopAccess, _peer_host
from desktop_relay.web.api import UserAPI
from desktop_relay.web.app import RelayWeb, failure_reason
from desktop_relay.web.guard import RequestGuard

ORIGIN = "http://127.0.0.1:8080"


class OnePassword:
    """anna with the password "right"; nobody else."""

    def authenticate(self, username: str, password: str) -> defer.Deferred:
        if (username, password) == ("anna", "right"):
            return defer.succeed(Identity("anna", "Anna", frozenset({"pupils"})))
        return defer.succeed(None)


class SignIn:
    """RelayWeb with local accounts on a loopback port."""

    def __init__(self, store: SQLiteStore) -> None:
        from twisted.internet import reactor

        self.store = store
        web_sessions = WebSessions(store, reactor, secure=False, idle=3600, lifetime=86400)
        guard = RequestGuard(web_sessions, ORIGIN, ())
        sessions = DesktopSessions(
            store=store, provisioner=FakeProvisioner([IMAGE]), probe=lambda backend: defer.succeed(True),
            clock=reactor, desktops={"demo": desktop("demo")}, instance="test", max_per_user=2,
            start_timeout=5, stop_timeout=1,
        )
        access = DesktopAccess(store, sessions, guard)
        web = RelayWeb(
            guard=guard, roles=Roles(frozenset(), frozenset()), authenticator=OnePassword(),
            throttle=LoginThrottle(reactor, 2, 300), api=UserAPI(store, sessions, guard), access=access,
            assets=AssetRelay(reactor), sessions=sessions, store=store,
            bridges=DesktopBridgeFactory(access.resolve_upgrade, reactor=reactor, url="ws://127.0.0.1:8080",
                                         max_message_size=1 << 20, ping_interval=30, open_timeout=5),
        )
        self.port = reactor.listenTCP(0, Site(web.resource()), interface="127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port.getHost().port}"
        self.http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))

    async def login(self, username: str, password: str) -> int:
        response = await self.http.post(
            self.url + "/login", data={"username": username, "password": password},
            headers={"Origin": ORIGIN}, allow_redirects=False,
        )
        await response.content()
        return response.code


@pytest_twisted.async_yield_fixture
async def signin(store: SQLiteStore) -> AsyncIterator[SignIn]:
    served = SignIn(store)
    yield served
    await served.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_sign_in_is_audited_with_method_and_address(signin: SignIn) -> None:
    assert await signin.login("anna", "right") == 303
    (line,) = await signin.store.audit_trail()
    assert (line["actor"], line["action"], line["target"], line["detail"], line["address"]) == (
        "anna", "sign-in", "anna", "local", "127.0.0.1")


@pytest_twisted.ensureDeferred
async def test_failed_and_throttled_sign_ins_are_audited_with_the_name_tried(signin: SignIn) -> None:
    assert await signin.login("anna", "wrong") == 401
    assert await signin.login("anna", "wrong") == 401
    assert await signin.login("anna", "right") == 429
    assert await signin.login("x" * 5000, "wrong") == 401
    trail = await signin.store.audit_trail()
    assert [(r["actor"][:5], r["action"], r["detail"], r["address"]) for r in reversed(trail)] == [
        ("anna", "sign-in-failed", "wrong-password", "127.0.0.1"),
        ("anna", "sign-in-failed", "wrong-password", "127.0.0.1"),
        ("anna", "sign-in-failed", "throttled", "127.0.0.1"),
        ("xxxxx", "sign-in-failed", "wrong-password", "127.0.0.1"),
    ]
    assert len(trail[0]["actor"]) == 200


def test_openid_failures_are_audited_by_their_kind() -> None:
    assert failure_reason(InvalidState("gone")) == "invalid-state"
    assert failure_reason(ProviderUnavailable("down")) == "provider-unavailable"


@pytest.mark.parametrize("peer, host", [
    ("tcp4:192.0.2.1:52914", "192.0.2.1"), ("tcp6:::1:52914", "::1"), ("unix", "unix"),
])
def test_the_address_is_read_from_autobahns_peer(peer: str, host: str) -> None:
    assert _peer_host(peer) == host


def test_forwarded_address_is_believed_only_from_a_trusted_proxy() -> None:
    guard = RequestGuard(None, ORIGIN, [ipaddress.ip_network("127.0.0.1/32")])  # type: ignore[arg-type]
    assert guard.address_behind("127.0.0.1", "198.51.100.9, 127.0.0.1") == "198.51.100.9"
    assert guard.address_behind("192.0.2.5", "198.51.100.9") == "192.0.2.5"
    assert guard.address_behind("127.0.0.1", None) == "127.0.0.1"
