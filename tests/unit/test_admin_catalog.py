"""The admin API's desktops, engine and reload groups, served on loopback with the in-memory engine,
a real store and a stand-in for AdminAuth (the bearer token's word is the caller's scope)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attr
import pytest
import pytest_twisted
from fakes import IMAGE, FakeProvisioner, TokenScopes, write_relay_ini
from treq.client import HTTPClient
from twisted.internet import defer, task
from twisted.internet.protocol import Protocol
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import Site

from desktop_relay.auth import Identity
from desktop_relay.config import RelayConfig, load_config
from desktop_relay.lifecycle import DesktopSessions, UnknownDesktop
from desktop_relay.reload import RELOADED_SETTINGS, RESTART_SETTINGS, ConfigReloader, SighupReload
from desktop_relay.store import QUEUED, READY, STARTING, DesktopSession, SQLiteStore
from desktop_relay.web.admin.desktops import DesktopsAdmin
from desktop_relay.web.admin.engine import EngineAdmin
from desktop_relay.web.admin.reload import ReloadAdmin

MISSING = "desktop-relay/not-pulled:1"
PROGRESS = [
    {"status": "Pulling from desktop-relay/not-pulled", "id": "1"},
    {"status": "Downloading", "id": "abc", "progress": "[==>   ] 1MB/3MB",
     "progressDetail": {"current": 1, "total": 3}},
    {"status": "Pull complete", "id": "abc"},
]


class Admin:
    """The three groups mounted as AdminAPI would, on a loopback port."""

    def __init__(self, store: SQLiteStore, engine: FakeProvisioner, config: RelayConfig) -> None:
        from twisted.internet import reactor

        self.store = store
        self.engine = engine
        self.config = config
        self.sessions = DesktopSessions(
            store=store, provisioner=engine, probe=lambda backend: defer.succeed(True), clock=reactor,
            desktops=config.desktops, instance="test", max_per_user=config.max_sessions_per_user,
            start_timeout=5, stop_timeout=1,
        )
        self.reloader = ConfigReloader(config, self.sessions, store, reactor)
        self.bridges = 3
        auth = TokenScopes()
        root = Resource()
        root.putChild(b"desktops", DesktopsAdmin(auth, self.sessions, store, reactor).app.resource())
        root.putChild(b"engine", EngineAdmin(auth, engine, instance="test", clock=reactor,
                                             started=reactor.seconds() - 60,
                                             bridge_count=lambda: self.bridges).app.resource())
        root.putChild(b"reload", ReloadAdmin(auth, self.reloader).app.resource())
        self.port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port.getHost().port}"
        self.http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))

    async def request(self, method: str, path: str, token: str | None = "write") -> tuple[int, dict[str, str], bytes]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.http.request(method, self.url + path, headers=headers)
        got = {k.decode().lower(): v[0].decode() for k, v in response.headers.getAllRawHeaders()}
        return response.code, got, await response.content()

    async def json(self, method: str, path: str, token: str | None = "write") -> tuple[int, Any]:
        code, headers, body = await self.request(method, path, token)
        assert headers["content-type"] in ("application/json", "application/problem+json"), headers
        return code, json.loads(body)

    async def settle(self) -> None:
        while self.sessions.working():
            await self.sessions.working()[0]

    async def audit(self) -> list[tuple[str, str, str, str]]:
        return [(a["actor"], a["action"], a["target"], a["detail"]) for a in await self.store.audit_trail()]


@pytest_twisted.async_yield_fixture
async def admin(store: SQLiteStore, tmp_path: Path) -> AsyncIterator[Admin]:
    path = write_relay_ini(tmp_path / "relay.ini", {
        "demo": {"image": IMAGE, "title": "Demo", "memory": "1g", "cpus": "2", "groups": "pupils 7b",
                 "max_sessions": "5", "idle_timeout": "30m"},
        "fresh": {"image": MISSING, "max_lifetime": "off"},
    })
    served = Admin(store, FakeProvisioner([IMAGE]), load_config(path))
    yield served
    await served.settle()
    await served.port.stopListening()


async def add_session(store: SQLiteStore, desktop: str, state: str, n: int) -> None:
    await store.add_session(DesktopSession(
        id=f"{desktop}-{state}-{n}", owner=f"user{n}", desktop=desktop, state=state, reason=None,
        container_id=None, host_port=None, vnc_password="x", created=1.0 + n, updated=1.0 + n,
    ))


# -- desktops -----------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_catalog_shows_desktops_as_configured_with_usage_and_image_presence(admin: Admin) -> None:
    for n, state in enumerate([READY, READY, STARTING, QUEUED]):
        await add_session(admin.store, "demo", state, n)
    code, body = await admin.json("GET", "/desktops/", token="read")
    assert code == 200
    demo, fresh = body["items"]
    assert demo == {
        "name": "demo", "offered": True, "title": "Demo", "description": "", "image": IMAGE, "image_present": True,
        "limits": {"memory": "1g", "cpus": 2.0, "pids_limit": None, "shm_size": "512m", "idle_timeout": 1800.0,
                   "max_lifetime": 36000.0, "disconnect_grace": 900.0, "idle_warning": 300.0, "max_sessions": 5},
        "groups": ["7b", "pupils"], "users": [],
        "usage": {"running": 2, "starting": 1, "queued": 1},
    }
    assert (fresh["name"], fresh["image_present"], fresh["limits"]["max_lifetime"]) == ("fresh", False, None)
    assert fresh["usage"] == {"running": 0, "starting": 0, "queued": 0}


@pytest_twisted.ensureDeferred
async def test_catalog_answers_with_image_presence_unknown_while_the_engine_is_down(admin: Admin) -> None:
    admin.engine.engine_down = True
    code, body = await admin.json("GET", "/desktops/")
    assert code == 200
    assert [d["image_present"] for d in body["items"]] == [None, None]


@pytest_twisted.ensureDeferred
async def test_one_desktop_and_an_unknown_one(admin: Admin) -> None:
    code, body = await admin.json("GET", "/desktops/demo")
    assert (code, body["name"], body["image_present"]) == (200, "demo", True)
    code, body = await admin.json("GET", "/desktops/nope")
    assert (code, body["type"]) == (404, "urn:desktop-relay:problem:no-such-desktop")
    code, body = await admin.json("POST", "/desktops/nope/pull")
    assert (code, body["type"]) == (404, "urn:desktop-relay:problem:no-such-desktop")
    assert admin.engine.pulls == []


@pytest_twisted.ensureDeferred
async def test_pull_streams_each_progress_message_as_a_json_line_then_done(admin: Admin) -> None:
    admin.engine.registry[MISSING] = PROGRESS
    code, headers, body = await admin.request("POST", "/desktops/fresh/pull")
    assert code == 200
    assert headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in body.decode().splitlines()]
    assert lines[:-1] == PROGRESS
    assert lines[-1] == {"status": "done", "desktop": "fresh", "image": MISSING}
    assert MISSING in admin.engine.images
    assert ("token:write", "admin-pull", "fresh", f"{MISSING}: done") in await admin.audit()
    code, body = await admin.json("GET", "/desktops/fresh")
    assert body["image_present"] is True


@pytest_twisted.ensureDeferred
async def test_pull_of_an_image_the_registry_does_not_have_ends_with_a_failed_line(admin: Admin) -> None:
    code, headers, body = await admin.request("POST", "/desktops/fresh/pull")
    assert (code, headers["content-type"]) == (200, "application/x-ndjson")
    last = json.loads(body.decode().splitlines()[-1])
    assert last["status"] == "failed" and "repository does not exist" in last["error"]
    assert MISSING not in admin.engine.images


@pytest_twisted.ensureDeferred
async def test_pull_while_the_engine_is_down_answers_503(admin: Admin) -> None:
    admin.engine.engine_down = True
    code, body = await admin.json("POST", "/desktops/fresh/pull")
    assert (code, body["type"]) == (503, "urn:desktop-relay:problem:container-engine-unavailable")


@pytest_twisted.ensureDeferred
async def test_pull_needs_a_caller_who_may_change_things(admin: Admin) -> None:
    admin.engine.registry[MISSING] = PROGRESS
    assert (await admin.json("POST", "/desktops/fresh/pull", token="read"))[0] == 403
    assert (await admin.json("POST", "/desktops/fresh/pull", token=None))[0] == 404
    assert (await admin.json("POST", "/desktops/fresh/pull", token="forged"))[0] == 401
    assert (await admin.json("GET", "/desktops/", token=None))[0] == 404
    assert admin.engine.pulls == []


@pytest_twisted.ensureDeferred
async def test_a_pull_is_given_up_when_the_caller_goes_away(admin: Admin) -> None:
    from twisted.internet import reactor

    admin.engine.registry[MISSING] = PROGRESS
    admin.engine.hold_pulls = True
    answer = admin.http.post(admin.url + "/desktops/fresh/pull", headers={"Authorization": "Bearer write"})
    while not admin.engine.pulls:
        await task.deferLater(reactor, 0.01, lambda: None)
    pull = admin.engine.pulls[0]
    pull.feed(PROGRESS[0])
    response = await answer
    assert response.code == 200
    first_line: defer.Deferred[bytes] = defer.Deferred()

    class LeaveAfterTheFirstLine(Protocol):
        def dataReceived(self, data: bytes) -> None:
            if not first_line.called:
                first_line.callback(data)
                self.transport.stopProducing()  # closes the connection

    response.deliverBody(LeaveAfterTheFirstLine())
    assert json.loads(await first_line) == PROGRESS[0]
    while not pull.stopped:
        await task.deferLater(reactor, 0.01, lambda: None)
    assert MISSING not in admin.engine.images
    assert ("token:write", "admin-pull", "fresh", f"{MISSING}: given up") in await admin.audit()


@pytest_twisted.ensureDeferred
async def test_a_second_pull_of_the_same_image_while_one_runs_is_refused(admin: Admin) -> None:
    from twisted.internet import reactor

    admin.engine.registry[MISSING] = PROGRESS
    admin.engine.hold_pulls = True
    first = admin.http.post(admin.url + "/desktops/fresh/pull", headers={"Authorization": "Bearer write"})
    while not admin.engine.pulls:
        await task.deferLater(reactor, 0.01, lambda: None)
    code, body = await admin.json("POST", "/desktops/fresh/pull")
    assert (code, body["type"]) == (409, "urn:desktop-relay:problem:pull-in-progress")
    admin.engine.pulls[0].finish()
    response = await first
    assert json.loads((await response.content()).decode().splitlines()[-1])["status"] == "done"
    assert len(admin.engine.pulls) == 1


# -- engine -------------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_engine_summary_with_this_instances_containers_and_the_relay(admin: Admin) -> None:
    await admin.sessions.start(Identity("anna", "Anna", frozenset({"pupils"})), "demo")
    await admin.settle()
    code, body = await admin.json("GET", "/engine/", token="read")
    assert code == 200
    assert body["engine"] == {
        "reachable": True, "version": "fake-1.0", "api_version": "1.41", "api_version_used": "1.41",
        "memory": 16 * 2**30, "cpus": 8, "containers": {"running": 1, "all": 1},
    }
    relay = body["relay"]
    assert (relay["instance"], relay["bridges"]) == ("test", 3)
    assert relay["uptime"] >= 60 and relay["version"]


@pytest_twisted.ensureDeferred
async def test_engine_summary_while_the_engine_is_down_still_describes_the_relay(admin: Admin) -> None:
    admin.engine.engine_down = True
    code, body = await admin.json("GET", "/engine/")
    assert code == 200
    assert body["engine"]["reachable"] is False and "down" in body["engine"]["problem"]
    assert body["relay"]["instance"] == "test"


# -- reload -------------------------------------------------------------------------------

def rewrite(admin: Admin, desktops: dict[str, dict[str, str]], **sections: dict[str, str]) -> None:
    write_relay_ini(admin.config.source, desktops, **sections)


@pytest_twisted.ensureDeferred
async def test_reload_adds_a_desktop_that_can_be_started_at_once(admin: Admin) -> None:
    rewrite(admin, {"demo": {"image": IMAGE}, "fresh": {"image": MISSING}, "extra": {"image": IMAGE}},
            sessions={"max_per_user": "3", "max_total": "10"})
    code, body = await admin.json("POST", "/reload/")
    assert code == 200
    assert body["desktops"] == {"added": ["extra"], "removed": [], "changed": ["demo", "fresh"]}
    assert body["settings_changed"] == ["[sessions] max_per_user", "[sessions] max_total"]
    assert body["restart_needed"] == []
    session, created = await admin.sessions.start(Identity("anna", "Anna", frozenset()), "extra")
    assert created and session.desktop == "extra"
    assert (admin.sessions.max_per_user, admin.sessions.limits.max_total) == (3, 10)
    (actor, target, detail), = [(a, t, d) for a, action, t, d in await admin.audit() if action == "admin-reload"]
    assert (actor, target) == ("token:write", str(admin.config.source))
    assert "desktops added: extra" in detail


@pytest_twisted.ensureDeferred
async def test_a_bad_relay_ini_answers_422_with_its_one_line_error_and_changes_nothing(admin: Admin) -> None:
    from twisted.logger import LogLevel, formatEvent, globalLogPublisher

    warnings: list[str] = []

    def observe(event: dict) -> None:
        if event.get("log_level") == LogLevel.warn:
            warnings.append(formatEvent(event))

    before = dict(admin.sessions.desktops)
    admin.config.source.write_text(admin.config.source.read_text().replace("memory = 1g", "memory = lots")
                                   + "\n[desktop:extra]\nimage = x\ngroups = *\n")
    globalLogPublisher.addObserver(observe)
    try:
        code, body = await admin.json("POST", "/reload/")
    finally:
        globalLogPublisher.removeObserver(observe)
    assert (code, body["type"]) == (422, "urn:desktop-relay:problem:invalid-configuration")
    assert body["detail"] == f"{admin.config.source}: [desktop:demo] memory: 'lots': must be a size such as 512m, 2g or 65536"
    assert dict(admin.sessions.desktops) == before
    assert len(warnings) == 1 and body["detail"] in warnings[0] and "\n" not in warnings[0]
    (actor, action, _, detail), *_ = await admin.audit()
    assert (actor, action, detail) == ("token:write", "admin-reload", f"refused: {body['detail']}")


@pytest_twisted.ensureDeferred
async def test_reload_names_the_settings_that_need_a_restart(admin: Admin) -> None:
    rewrite(admin, {"demo": {"image": IMAGE, "memory": "1g", "cpus": "2", "groups": "pupils 7b",
                             "max_sessions": "5", "idle_timeout": "30m"},
                    "fresh": {"image": MISSING, "max_lifetime": "off"}},
            relay={"database": str(admin.config.source.parent / "relay.sqlite3"), "instance": "other",
                   "listen": "tcp:9999:interface=127.0.0.1"},
            auth={"method": "header"}, header={})
    code, body = await admin.json("POST", "/reload/")
    # header sign-in needs trusted proxies: the file is refused as a whole.
    assert code == 422 and "[relay] trusted_proxies" in body["detail"]
    rewrite(admin, {"demo": {"image": IMAGE}},
            relay={"database": str(admin.config.source.parent / "relay.sqlite3"), "instance": "other",
                   "listen": "tcp:9999:interface=127.0.0.1"})
    code, body = await admin.json("POST", "/reload/")
    assert code == 200
    assert body["restart_needed"] == ["[relay] instance", "[relay] listen"]
    assert body["desktops"]["removed"] == ["fresh"]
    assert admin.sessions.instance == "test"
    # Asked again, the same file changes nothing more, but still needs the restart.
    code, body = await admin.json("POST", "/reload/")
    assert body["desktops"] == {"added": [], "removed": [], "changed": []}
    assert body["restart_needed"] == ["[relay] instance", "[relay] listen"]


@pytest_twisted.ensureDeferred
async def test_a_removed_desktop_cannot_be_started_but_its_running_session_keeps_its_policy(admin: Admin) -> None:
    anna = Identity("anna", "Anna", frozenset({"pupils"}))
    session, _ = await admin.sessions.start(anna, "demo")
    await admin.settle()
    rewrite(admin, {"fresh": {"image": MISSING}})
    code, body = await admin.json("POST", "/reload/")
    assert (code, body["desktops"]["removed"]) == (200, ["demo"])
    with pytest.raises(UnknownDesktop):
        await admin.sessions.start(Identity("bob", "Bob", frozenset({"pupils"})), "demo")
    running = await admin.store.get_session(session.id)
    assert running is not None and running.state == READY
    timing = admin.sessions.timing_of(running)
    assert timing is not None and timing.idle_deadline is not None  # idle_timeout 30m still applies
    items = (await admin.json("GET", "/desktops/"))[1]["items"]
    assert [(d["name"], d["offered"], d["usage"]["running"]) for d in items] == [("fresh", True, 0), ("demo", False, 1)]
    await admin.sessions.stop(running, "anna")
    assert [d["name"] for d in (await admin.json("GET", "/desktops/"))[1]["items"]] == ["fresh"]


@pytest_twisted.ensureDeferred
async def test_reload_needs_a_caller_who_may_change_things(admin: Admin) -> None:
    rewrite(admin, {"extra": {"image": IMAGE}})
    assert (await admin.json("POST", "/reload/", token="read"))[0] == 403
    assert (await admin.json("POST", "/reload/", token=None))[0] == 404
    assert list(admin.sessions.desktops) == ["demo", "fresh"]


def test_every_setting_is_either_reloaded_or_reported_as_needing_a_restart() -> None:
    fields = {f.name for f in attr.fields(RelayConfig)} - {"source", "desktops"}
    assert fields == set(RESTART_SETTINGS) | set(RELOADED_SETTINGS)


@pytest_twisted.ensureDeferred
async def test_sighup_only_schedules_the_reload_on_the_reactor(admin: Admin) -> None:
    scheduled: list[Any] = []

    class Reactor:
        def callFromThread(self, f: Any, *args: Any) -> None:
            scheduled.append((f, args))

    rewrite(admin, {"demo": {"image": IMAGE}, "extra": {"image": IMAGE}})
    hup = SighupReload(admin.reloader, Reactor())
    hup.accepting = True
    hup._signalled(1, None)
    assert "extra" not in admin.sessions.desktops
    (f, args), = scheduled
    await f(*args)
    assert "extra" in admin.sessions.desktops
    (actor, action, _, _), *_ = await admin.audit()
    assert (actor, action) == ("relay", "reload")


def test_sighup_before_the_relay_is_ready_is_ignored_with_a_warning(admin: Admin) -> None:
    rewrite(admin, {"demo": {"image": IMAGE}, "extra": {"image": IMAGE}})
    assert SighupReload(admin.reloader, None)._reload() is None  # type: ignore[arg-type]
    assert "extra" not in admin.sessions.desktops
