"""/api/admin/pool/ and /api/admin/prestarts/ on a loopback Site: what waits in the pool, what was
claimed, the schedules' next lessons and what was started for whom."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest_twisted
from fakes import IMAGE, FakeProvisioner, desktop
from test_prestart import SCHEDULE
from treq.client import HTTPClient
from twisted.internet import defer, task
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.server import Site

from desktop_relay.auth import Identity
from desktop_relay.auth.websessions import WebSessions, token_hash
from desktop_relay.lifecycle import DesktopSessions
from desktop_relay.lifecycle.pool import WarmPool
from desktop_relay.lifecycle.prestart import LessonPrestarts
from desktop_relay.lifecycle.timetable import WeeklyTimes
from desktop_relay.store import AdminToken, SeenUser, SQLiteStore
from desktop_relay.web.admin import AdminAPI, AdminAuth
from desktop_relay.web.admin.pool import PoolAdmin, PrestartsAdmin
from desktop_relay.web.guard import RequestGuard

BERLIN = ZoneInfo("Europe/Berlin")
SUNDAY_EVENING = datetime(2026, 3, 1, 20, 0, tzinfo=BERLIN).timestamp()


class Admin:
    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.clock = task.Clock()
        self.clock.advance(SUNDAY_EVENING)
        self.sessions = DesktopSessions(
            store=store, provisioner=FakeProvisioner([IMAGE], clock=self.clock),
            probe=lambda backend: defer.succeed(True), clock=self.clock,
            desktops={"demo": desktop("demo", home="none", pool_size=2), "plain": desktop("plain")},
            instance="test", max_per_user=2, start_timeout=5, stop_timeout=1,
        )
        self.pool = WarmPool(self.sessions, store, self.clock, lambda backend: defer.succeed(True), start_timeout=5)
        self.prestarts = LessonPrestarts(self.sessions, store, self.clock,
                                         {SCHEDULE.name: (SCHEDULE, WeeklyTimes(SCHEDULE.times, BERLIN))},
                                         connected=lambda session_id: 0)
        guard = RequestGuard(WebSessions(store, self.clock, secure=False, idle=3600, lifetime=86400),
                             "http://127.0.0.1:8080", ())
        auth = AdminAuth(store, guard, self.clock)
        api = AdminAPI(auth, {
            "pool": PoolAdmin(auth, store, self.sessions).app.resource(),
            "prestarts": PrestartsAdmin(auth, store, self.prestarts, self.clock).app.resource(),
        })
        from twisted.internet import reactor

        # The store answers from its thread: a real (loopback) connection, not StubTreq's pump.
        self.port = reactor.listenTCP(0, Site(api.app.resource()), interface="127.0.0.1")
        self.http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))

    async def get(self, path: str) -> tuple[int, Any]:
        url = f"http://127.0.0.1:{self.port.getHost().port}{path}"
        response = await self.http.get(url, headers={"Authorization": "Bearer read-token"})
        return response.code, json.loads(await response.content())

    async def settle(self) -> None:
        while self.sessions.working() or self.pool.working():
            for working in [*self.sessions.working(), *self.pool.working()]:
                await working


@pytest_twisted.async_yield_fixture
async def admin(store: SQLiteStore) -> AsyncIterator[Admin]:
    served = Admin(store)
    yield served
    await served.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_the_pool_shows_waiting_and_claimed_containers(store: SQLiteStore, admin: Admin) -> None:
    await store.add_admin_token(AdminToken("mon", token_hash("read-token"), "read", 1.0))
    await admin.pool.maintain()
    await admin.settle()
    session, _ = await admin.sessions.start(Identity("anna", "Anna", frozenset({"pupils"})), "demo")
    await admin.settle()
    code, body = await admin.get("/pool/")
    assert code == 200
    (demo,) = body["desktops"]
    assert (demo["desktop"], demo["pool_size"], demo["ready"], demo["starting"]) == ("demo", 2, 1, 0)
    assert [c["state"] for c in demo["containers"]] == ["ready"]
    (claimed,) = body["claimed"]
    assert claimed["session"] == session.id and claimed["desktop"] == "demo"
    assert "vnc_password" not in json.dumps(body)


@pytest_twisted.ensureDeferred
async def test_prestarts_show_the_next_lessons_and_who_got_a_desktop(store: SQLiteStore, admin: Admin) -> None:
    await store.add_admin_token(AdminToken("mon", token_hash("read-token"), "read", 1.0))
    await store.user_signed_in(SeenUser("anna", "Anna", frozenset({"klasse-7a"}), "pupil", 0.0, 0.0))
    admin.clock.advance(datetime(2026, 3, 2, 7, 55, tzinfo=BERLIN).timestamp() - admin.clock.seconds())
    await admin.prestarts.tick()
    await admin.settle()
    code, body = await admin.get("/prestarts/")
    assert code == 200
    (schedule,) = body["schedules"]
    assert schedule["name"] == "7a-informatik" and schedule["group"] == "klasse-7a"
    lesson = datetime(2026, 3, 2, 8, 0, tzinfo=BERLIN).timestamp()
    assert [n["start"] for n in schedule["next_lessons"]] == [lesson]  # next week's is 7 days and 5 minutes away
    (mark,) = body["prestarts"]
    assert (mark["user"], mark["outcome"], mark["lesson"]) == ("anna", "started", lesson)
    code, problem = await admin.get("/prestarts/?since=yesterday")
    assert code == 400 and problem["type"].endswith("invalid-parameter")
