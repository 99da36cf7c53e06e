"""Homes with the in-memory engine and the real SQLite store: what a start mounts (the user's home,
the shares they may see, read-only), what happens when a home cannot be made, the background
measurement, and the user's and the admin's API of homes on a loopback Site."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from fakes import IMAGE, FakeHomeVolumes, FakeProvisioner, desktop
from treq.client import HTTPClient
from twisted.internet import defer, task
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import Site

from desktop_relay.auth import Identity
from desktop_relay.auth.websessions import WebSessions, token_hash
from desktop_relay.config import ShareSettings
from desktop_relay.engine.interface import ContainerEngineTimedOut, Mount
from desktop_relay.homes import home_for
from desktop_relay.homes.interface import HomeVolume
from desktop_relay.homes.usage import HomeUsage
from desktop_relay.lifecycle import DesktopSessions
from desktop_relay.store import FAILED, QUEUED, READY, AdminToken, DesktopSession, SeenUser, SQLiteStore, WebSession
from desktop_relay.web.admin import AdminAPI, AdminAuth
from desktop_relay.web.admin.users import UsersAdmin
from desktop_relay.web.api import UserAPI
from desktop_relay.web.guard import RequestGuard

ORIGIN = "http://127.0.0.1:8080"
PROBLEM = "urn:desktop-relay:problem:"
ANNA = Identity("anna", "Anna", frozenset({"pupils", "7b"}))
BEN = Identity("ben", "Ben", frozenset({"pupils", "7c"}))
DESKTOPS = {
    "demo": desktop("demo"),
    # The same family as demo: the same home.
    "code": desktop("code", home_quota=1000),
    "lab": desktop("lab", home="per-desktop"),
    "kiosk": desktop("kiosk", home="none"),
}
SHARES = {
    "worksheets": ShareSettings(name="worksheets", path=Path("/srv/shares/worksheets"), volume=None,
                                groups=frozenset({"7b"}), users=frozenset(), desktops=frozenset(),
                                mount="Shared/worksheets"),
    "material": ShareSettings(name="material", path=None, volume="teacher-material", groups=frozenset(),
                              users=frozenset({"ben"}), desktops=frozenset({"demo"}), mount="/mnt/material"),
}


@contextmanager
def capture_logs(lines: list[str], level: LogLevel = LogLevel.warn) -> Iterator[None]:
    """The log lines of `level` emitted meanwhile, formatted."""

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_level") == level:
            lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    try:
        yield
    finally:
        globalLogPublisher.removeObserver(observe)


class World:
    """Desktop sessions with homes and shares on the fake engine; anna and ben have signed in."""

    def __init__(self, store: SQLiteStore) -> None:
        from twisted.internet import reactor

        self.store = store
        self.engine = FakeProvisioner([IMAGE])
        self.volumes = FakeHomeVolumes(self.engine)
        self.sessions = DesktopSessions(
            store=store, provisioner=self.engine, probe=lambda backend: defer.succeed(True), clock=reactor,
            desktops=DESKTOPS, instance="test", max_per_user=3, start_timeout=5, stop_timeout=1,
            homes=self.volumes, shares=SHARES,
        )

    async def prepare(self) -> None:
        for person in (ANNA, BEN):
            await self.store.user_signed_in(SeenUser(person.user_id, person.display_name, person.groups,
                                                     "pupil", 100.0, 100.0))

    async def started(self, identity: Identity, name: str = "demo") -> DesktopSession:
        session, _ = await self.sessions.start(identity, name)
        while self.sessions.working():
            for working in self.sessions.working():
                await working
        return await self.store.get_session(session.id)

    def mounts_of(self, session: DesktopSession) -> tuple[Mount, ...]:
        container = self.engine.container_for(session.id)
        assert container is not None
        return container.spec.mounts


@pytest_twisted.async_yield_fixture
async def world(store: SQLiteStore) -> AsyncIterator[World]:
    made = World(store)
    await made.prepare()
    yield made


# -- what a start mounts ------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_start_mounts_the_users_home_and_the_shares_they_may_see_read_only(world: World) -> None:
    anna = await world.started(ANNA)
    home = home_for("test", DESKTOPS["demo"], "anna")
    assert home is not None
    assert world.mounts_of(anna) == (
        Mount(source=home.volume, target="/home/kasm-user", read_only=False, kind="volume"),
        Mount(source="/srv/shares/worksheets", target="/home/kasm-user/Shared/worksheets", read_only=True,
              kind="bind"),
    )
    assert world.volumes.volumes[home.volume].owner == "anna"


@pytest_twisted.ensureDeferred
async def test_a_share_is_mounted_only_for_its_users_and_into_its_desktops(world: World) -> None:
    ben_demo = await world.started(BEN)
    assert [m.source for m in world.mounts_of(ben_demo)[1:]] == ["teacher-material"]
    assert world.mounts_of(ben_demo)[1] == Mount(source="teacher-material", target="/mnt/material",
                                                 read_only=True, kind="volume")
    ben_lab = await world.started(BEN, "lab")
    assert len(world.mounts_of(ben_lab)) == 1  # material is for demo only, worksheets for 7b only


@pytest_twisted.ensureDeferred
async def test_two_users_never_share_a_home_and_a_family_shares_one_per_user(world: World) -> None:
    anna_demo = await world.started(ANNA)
    anna_code = await world.started(ANNA, "code")
    anna_lab = await world.started(ANNA, "lab")
    ben_demo = await world.started(BEN)
    homes = {name: world.mounts_of(s)[0].source
             for name, s in [("anna-demo", anna_demo), ("anna-code", anna_code), ("anna-lab", anna_lab),
                             ("ben-demo", ben_demo)]}
    assert homes["anna-demo"] == homes["anna-code"]
    assert len({homes["anna-demo"], homes["anna-lab"], homes["ben-demo"]}) == 3
    assert {h.key for h in await world.store.homes_of("anna")} == {"default", "d-lab"}


@pytest_twisted.ensureDeferred
async def test_a_desktop_without_a_home_mounts_none(world: World) -> None:
    kiosk = await world.started(ANNA, "kiosk")
    assert [m.kind for m in world.mounts_of(kiosk)] == ["bind"]
    assert world.volumes.volumes == {}


@pytest_twisted.ensureDeferred
async def test_a_home_the_engine_refuses_fails_the_start_with_the_reason(world: World) -> None:
    world.volumes.refuse_next("no space left on device")
    session = await world.started(ANNA)
    assert session.state == FAILED and session.failure == "engine-refused"
    assert session.reason == "Your home folder could not be prepared: no space left on device"
    assert world.engine.containers == {}


@pytest_twisted.ensureDeferred
async def test_a_home_the_engine_does_not_answer_for_in_time_fails_the_start_and_the_engine_counts_as_there(
    world: World,
) -> None:
    world.volumes.time_out_next()
    session = await world.started(ANNA)
    assert session.state == FAILED and session.failure == "engine-timeout"
    assert world.sessions.engine.available
    assert (await world.started(ANNA)).state == READY


@pytest_twisted.ensureDeferred
async def test_a_home_that_cannot_be_made_for_an_unreachable_engine_waits_in_the_queue(world: World) -> None:
    world.engine.engine_down = True
    session = await world.started(ANNA)
    assert session.state == QUEUED and world.volumes.volumes == {}
    world.engine.engine_down = False
    world.sessions.engine.back()
    await world.sessions.drain()
    while world.sessions.working():
        await world.sessions.working()[0]
    assert (await world.store.get_session(session.id)).state == READY
    assert len(world.volumes.volumes) == 1


# -- measuring ----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_the_measurement_stores_usage_adopts_unknown_homes_and_forgets_removed_ones(world: World) -> None:
    clock = task.Clock()
    clock.advance(5000)
    anna = await world.started(ANNA)
    volume = world.mounts_of(anna)[0].source
    world.volumes.sizes[volume] = 1234
    # A home made by an earlier relay with this instance, which the store has not seen.
    stray = home_for("test", DESKTOPS["demo"], "carla")
    assert stray is not None
    await world.volumes.ensure(stray)
    # One the store knows and the engine lost (removed by hand).
    gone = home_for("test", DESKTOPS["demo"], "dora")
    assert gone is not None
    await world.store.home_used(gone, 10.0)
    told: list[str] = []
    await HomeUsage(world.volumes, world.store, clock, "test", on_measured=lambda: told.append("measured")).measure()
    assert told == ["measured"]
    (anna_home,) = await world.store.homes_of("anna")
    assert (anna_home.usage_bytes, anna_home.measured_at) == (1234, 5000)
    assert [h.volume for h in await world.store.homes_of("carla")] == [stray.volume]
    assert await world.store.homes_of("dora") == []


@pytest_twisted.ensureDeferred
async def test_a_measurement_the_engine_does_not_finish_in_time_keeps_the_last_numbers(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    anna = await world.started(ANNA)
    world.volumes.sizes[world.mounts_of(anna)[0].source] = 10
    told: list[str] = []
    usage = HomeUsage(world.volumes, world.store, task.Clock(), "test", on_measured=lambda: told.append("measured"))
    await usage.measure()
    monkeypatch.setattr(world.volumes, "usage",
                        lambda instance: defer.fail(ContainerEngineTimedOut("did not answer within 30 s")))
    warnings = []
    with capture_logs(warnings):
        await usage.measure()
    assert [h.usage_bytes for h in await world.store.homes_of("anna")] == [10]
    assert warnings == ["home usage not measured this time: did not answer within 30 s"]
    assert told == ["measured"]  # the first measurement only


@pytest_twisted.ensureDeferred
async def test_a_home_first_used_during_a_measurement_is_kept(store: SQLiteStore) -> None:
    home = home_for("test", DESKTOPS["demo"], "anna")
    assert home is not None
    await store.home_used(home, 200.0)
    # The listing began at 100, before the home existed, so it is missing from it.
    assert await store.record_home_usage([], {}, 100.0, 300.0) == (0, 0)
    assert len(await store.homes_of("anna")) == 1
    listed = HomeVolume(volume="dr-test-home-default-x", owner="bea", key="default", created=50.0)
    assert await store.record_home_usage([listed], {listed.volume: 7}, 100.0, 300.0) == (1, 0)
    (bea,) = await store.homes_of("bea")
    assert (bea.created, bea.usage_bytes) == (50.0, 7)


# -- the APIs -------------------------------------------------------------------------------


class Served(World):
    """The user API at /api/ and the admin API at /admin/ on a loopback port; anna's and ben's web
    sessions, and a write token."""

    def __init__(self, store: SQLiteStore) -> None:
        super().__init__(store)
        from twisted.internet import reactor

        self.web_sessions = WebSessions(store, reactor, secure=False, idle=3600, lifetime=86400)
        guard = RequestGuard(self.web_sessions, ORIGIN, ())
        auth = AdminAuth(store, guard, reactor)
        root = Resource()
        root.putChild(b"api", UserAPI(store, self.sessions, guard).app.resource())
        root.putChild(b"admin", AdminAPI(auth, {
            "users": UsersAdmin(auth, store, self.sessions, bridges=None).app.resource(),
        }).app.resource())
        self.port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port.getHost().port}"
        self.http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))

    async def prepare(self) -> None:
        await super().prepare()
        for person in (ANNA, BEN):
            await self.store.add_web_session(WebSession(token_hash(f"cookie-of-{person.user_id}"), person.user_id,
                                                        person.display_name, person.groups, 1e12, 1e12))
        await self.store.add_admin_token(AdminToken("ops", token_hash("write-token"), "write", 1.0))

    async def call(self, method: str, path: str, who: str = "token") -> tuple[int, Any]:
        headers = {"Origin": ORIGIN}
        if who == "token":
            headers["Authorization"] = "Bearer write-token"
        else:
            headers["Cookie"] = f"{self.web_sessions.cookie_name.decode()}=cookie-of-{who}"
        response = await self.http.request(method, self.url + path, headers=headers)
        return response.code, json.loads(await response.content())


@pytest_twisted.async_yield_fixture
async def served(store: SQLiteStore) -> AsyncIterator[Served]:
    made = Served(store)
    await made.prepare()
    yield made
    await made.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_user_sees_their_own_homes_with_usage_and_quota(served: Served) -> None:
    anna = await served.started(ANNA, "code")
    served.volumes.sizes[served.mounts_of(anna)[0].source] = 1500
    await HomeUsage(served.volumes, served.store, task.Clock(), "test").measure()
    await served.started(BEN)
    status, answer = await served.call("GET", "/api/homes", "anna")
    assert status == 200
    (home,) = answer["items"]
    assert {k: home[k] for k in ("key", "desktops", "usage", "quota", "over_quota")} == {
        "key": "default", "desktops": ["demo", "code"], "usage": 1500, "quota": 1000, "over_quota": True,
    }
    assert "volume" not in home


@pytest_twisted.ensureDeferred
async def test_the_session_view_says_when_its_home_is_over_the_desktops_quota(served: Served) -> None:
    code = await served.started(ANNA, "code")
    demo = await served.started(ANNA, "demo")
    status, view = await served.call("GET", f"/api/sessions/{code.id}", "anna")
    assert status == 200 and view["home"] == {"key": "default", "usage": None, "quota": 1000, "over_quota": False}
    served.volumes.sizes[served.mounts_of(code)[0].source] = 1001
    await HomeUsage(served.volumes, served.store, task.Clock(), "test").measure()
    _, view = await served.call("GET", f"/api/sessions/{code.id}", "anna")
    assert view["home"]["over_quota"] is True
    # The same home, but demo has no quota of its own.
    _, view = await served.call("GET", f"/api/sessions/{demo.id}", "anna")
    assert view["home"] == {"key": "default", "usage": 1001, "quota": None, "over_quota": False}


@pytest_twisted.ensureDeferred
async def test_an_admin_lists_a_users_homes_and_what_uses_them(served: Served) -> None:
    anna = await served.started(ANNA)
    status, answer = await served.call("GET", "/admin/users/anna/homes")
    assert status == 200 and answer["user"] == "anna"
    (home,) = answer["items"]
    assert home["key"] == "default" and home["volume"] == served.mounts_of(anna)[0].source
    assert home["used_by"] == [anna.id]
    status, answer = await served.call("GET", "/admin/users/nobody/homes")
    assert status == 404 and answer["type"] == PROBLEM + "no-such-user"


@pytest_twisted.ensureDeferred
async def test_deleting_a_home_in_use_is_refused_and_after_the_stop_it_is_deleted_and_audited(
    served: Served,
) -> None:
    anna = await served.started(ANNA)
    volume = served.mounts_of(anna)[0].source
    status, answer = await served.call("DELETE", "/admin/users/anna/homes/default")
    assert status == 409 and answer["type"] == PROBLEM + "home-in-use"
    assert anna.id in answer["detail"] and volume in served.volumes.volumes
    await served.sessions.stop(anna, "anna")
    status, answer = await served.call("DELETE", "/admin/users/anna/homes/default")
    assert status == 200 and answer == {"user": "anna", "key": "default", "volume": volume}
    assert volume not in served.volumes.volumes
    assert await served.store.homes_of("anna") == []
    (line, *_) = await served.store.audit_trail()
    assert (line["actor"], line["action"], line["target"]) == ("token:ops", "home.delete", "anna")
    status, answer = await served.call("DELETE", "/admin/users/anna/homes/default")
    assert status == 404 and answer["type"] == PROBLEM + "no-such-home"


@pytest_twisted.ensureDeferred
async def test_a_home_another_container_still_mounts_is_not_deleted(served: Served) -> None:
    anna = await served.started(ANNA)
    # The session ended in the store, but its container is still there (the engine was slow, say).
    await served.store.update_session(anna.id, 1e9, expect=[READY], state="stopped")
    status, answer = await served.call("DELETE", "/admin/users/anna/homes/default")
    assert status == 409 and answer["type"] == PROBLEM + "home-in-use"
    assert "volume is in use" in answer["detail"]


@pytest_twisted.ensureDeferred
async def test_a_key_that_names_no_home_is_not_found(served: Served) -> None:
    for key in ("default", "..", "D-LAB"):
        status, answer = await served.call("DELETE", f"/admin/users/ben/homes/{key}")
        assert status == 404 and answer["type"] == PROBLEM + "no-such-home", key
