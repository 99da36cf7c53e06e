"""Desktops started before the lesson: lead, members known from sign-ins, capacity, the claim
window and its `unclaimed` stop, and what a restart finds; on a task.Clock."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest_twisted
from fakes import IMAGE, FakeProvisioner, desktop
from twisted.internet import defer, task

from desktop_relay.auth import Identity
from desktop_relay.backend import Backend
from desktop_relay.capacity import CapacityLimits
from desktop_relay.config import ScheduleSettings
from desktop_relay.lifecycle import DesktopSessions
from desktop_relay.lifecycle.prestart import LessonPrestarts
from desktop_relay.lifecycle.timetable import WeeklyTimes
from desktop_relay.store import READY, STOPPED, SeenUser, SQLiteStore

BERLIN = ZoneInfo("Europe/Berlin")
SCHEDULE = ScheduleSettings(name="7a-informatik", group="klasse-7a", desktop="demo", times=("mon 08:00-08:45",),
                            calendar=None, lead=600, claim_window=900, timezone="Europe/Berlin")


def monday(clock_time: str) -> float:
    """A time on Monday 2026-03-02 in Berlin."""
    return datetime.fromisoformat(f"2026-03-02T{clock_time}").replace(tzinfo=BERLIN).timestamp()


class Probe:
    def __call__(self, backend: Backend) -> defer.Deferred[bool]:
        return defer.succeed(True)


class ClientFetcher:
    """Records the web clients fetched ahead; has files to fetch once `known` (a build was loaded)."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, int]] = []
        self.known = False
        self.kept: frozenset[str] = frozenset()

    def warm(self, session_id: str, user_id: str, backend: Any) -> defer.Deferred[int]:
        self.asked.append((session_id, user_id, backend.port))
        return defer.succeed(70 if self.known else 0)

    def keep_only(self, session_ids: frozenset[str]) -> None:
        self.kept = session_ids


class LessonWorld:
    def __init__(self, store: SQLiteStore, clock: task.Clock | None = None,
                 engine: FakeProvisioner | None = None, **limits: Any) -> None:
        self.store = store
        self.clock = clock or task.Clock()
        self.engine = engine or FakeProvisioner([IMAGE], clock=self.clock)
        self.connections: dict[str, int] = {}
        self.sessions = DesktopSessions(
            store=store, provisioner=self.engine, probe=Probe(), clock=self.clock,
            desktops={"demo": desktop("demo", disconnect_grace=60.0, idle_timeout=120.0, idle_warning=30.0)},
            instance="test", max_per_user=2, start_timeout=5, stop_timeout=1, limits=CapacityLimits(**limits),
            connected=lambda session_id: self.connections.get(session_id, 0),
        )
        timetable = WeeklyTimes(SCHEDULE.times, BERLIN)
        self.client = ClientFetcher()
        self.prestarts = LessonPrestarts(self.sessions, store, self.clock, {SCHEDULE.name: (SCHEDULE, timetable)},
                                         connected=lambda session_id: self.connections.get(session_id, 0),
                                         fetch_client=self.client)

    def at(self, clock_time: str) -> None:
        self.clock.advance(monday(clock_time) - self.clock.seconds())

    async def tick(self) -> None:
        """What the lifecycle's tick does: the pre-starts, then the reaper."""
        await self.prestarts.tick()
        await self.sessions.reap()
        while self.sessions.working():
            for working in self.sessions.working():
                await working

    async def sessions_of(self, user: str) -> list[Any]:
        return await self.store.sessions_of(user)


async def seen(store: SQLiteStore, user: str, *groups: str) -> None:
    await store.user_signed_in(SeenUser(user, user.title(), frozenset(groups), "pupil", 0.0, 0.0))


@pytest_twisted.ensureDeferred
async def test_lead_before_a_lesson_every_known_member_of_the_group_gets_the_desktop(store: SQLiteStore) -> None:
    for pupil in ("anna", "ben", "cem"):
        await seen(store, pupil, "klasse-7a", "pupils")
    await seen(store, "dora", "klasse-7b")
    world = LessonWorld(store)
    world.at("07:49")
    await world.tick()
    assert await store.active_sessions() == []  # more than `lead` before the lesson
    world.at("07:51")
    await world.tick()
    started = await store.active_sessions()
    assert sorted(s.owner for s in started) == ["anna", "ben", "cem"]
    assert all(s.state == READY and s.desktop == "demo" for s in started)
    world.at("07:52")
    await world.tick()
    assert len(await store.active_sessions()) == 3  # once per lesson
    trail = [line for line in await store.audit_trail() if line["action"] == "prestart"]
    assert len(trail) == 3 and {line["actor"] for line in trail} == {"schedule:7a-informatik"}


@pytest_twisted.ensureDeferred
async def test_prestarts_stay_within_capacity_and_try_again_until_the_lesson_begins(store: SQLiteStore) -> None:
    for pupil in ("anna", "ben", "cem"):
        await seen(store, pupil, "klasse-7a")
    world = LessonWorld(store, max_total=2)
    world.at("07:55")
    await world.tick()
    started = await store.active_sessions()
    assert [s.owner for s in started] == ["anna", "ben"]
    assert all(s.state == READY for s in started)  # nothing queued for cem
    await world.sessions.stop(started[0], "anna")
    world.at("07:56")
    await world.tick()
    assert sorted(s.owner for s in await store.active_sessions()) == ["ben", "cem"]


@pytest_twisted.ensureDeferred
async def test_an_unopened_prestart_is_left_alone_by_the_reaper_then_stopped_unclaimed(store: SQLiteStore) -> None:
    await seen(store, "anna", "klasse-7a")
    world = LessonWorld(store)
    world.at("07:51")
    await world.tick()
    (session,) = await store.active_sessions()
    world.at("08:14")
    await world.tick()
    # Far past its disconnect grace (60 s) and idle timeout (120 s): still there, waiting for anna.
    assert (await store.get_session(session.id)).state == READY
    world.at("08:15")
    await world.tick()
    stopped = await store.get_session(session.id)
    assert stopped.state == STOPPED and stopped.end_reason == "unclaimed"
    assert stopped.reason == "Started for your lesson and stopped because nobody opened it within 15 minutes."
    stop = [line for line in await store.audit_trail() if line["action"] == "stop"]
    assert stop[0]["actor"] == "schedule:7a-informatik" and stop[0]["detail"] == "unclaimed"


@pytest_twisted.ensureDeferred
async def test_an_opened_prestart_is_kept_and_its_idle_clock_starts_when_it_was_opened(store: SQLiteStore) -> None:
    await seen(store, "anna", "klasse-7a")
    world = LessonWorld(store)
    world.at("07:51")
    await world.tick()
    (session,) = await store.active_sessions()
    world.at("08:02")
    world.connections[session.id] = 1
    await world.tick()
    world.at("08:03")
    await world.tick()
    # Opened at 08:02: its idle timeout (120 s) counts from then, not from 07:51.
    assert (await store.get_session(session.id)).state == READY
    world.at("08:20")
    await world.tick()
    assert (await store.get_session(session.id)).end_reason == "idle"


@pytest_twisted.ensureDeferred
async def test_a_pupil_already_running_the_desktop_is_left_as_they_are(store: SQLiteStore) -> None:
    await seen(store, "anna", "klasse-7a")
    world = LessonWorld(store)
    world.at("07:40")
    own, _ = await world.sessions.start(Identity("anna", "Anna", frozenset({"klasse-7a"})), "demo")
    world.connections[own.id] = 1
    world.at("07:55")
    await world.tick()
    world.at("08:16")
    await world.tick()
    # Nothing started beside hers, and hers is not stopped as unclaimed (the reaper may stop it).
    assert [s.id for s in await store.sessions_of("anna")] == [own.id]
    assert (await store.get_session(own.id)).end_reason != "unclaimed"
    (mark,) = await store.prestarts_since(0)
    assert mark.outcome == "already-running" and mark.session_id is None


@pytest_twisted.ensureDeferred
async def test_after_a_restart_a_lesson_is_not_prestarted_again_and_its_window_still_closes(
    store: SQLiteStore,
) -> None:
    for pupil in ("anna", "ben"):
        await seen(store, pupil, "klasse-7a")
    before = LessonWorld(store)
    before.at("07:55")
    await before.tick()
    after = LessonWorld(store, clock=before.clock, engine=before.engine)
    after.at("07:58")
    await after.tick()
    assert len(await store.active_sessions()) == 2
    after.at("08:15")
    await after.tick()
    assert await store.active_sessions() == []
    assert {m.outcome for m in await store.prestarts_since(0)} == {"unclaimed"}


@pytest_twisted.ensureDeferred
async def test_a_prestart_opened_between_two_ticks_counts_as_opened(store: SQLiteStore) -> None:
    await seen(store, "anna", "klasse-7a")
    world = LessonWorld(store)
    world.at("07:51")
    await world.tick()
    (session,) = await store.active_sessions()
    world.at("08:05")
    # A short visit the ticks did not see, but the audit trail did.
    await store.audit(world.clock.seconds(), "anna", "connect", session.id)
    await store.audit(world.clock.seconds() + 1, "anna", "disconnect", session.id)
    await world.tick()
    world.at("08:15")
    await world.tick()
    assert (await store.get_session(session.id)).end_reason != "unclaimed"
    (mark,) = await store.prestarts_since(0)
    assert mark.outcome == "opened"


@pytest_twisted.ensureDeferred
async def test_a_ready_prestart_has_its_client_fetched_ahead_until_it_was_had(store: SQLiteStore) -> None:
    await seen(store, "anna", "klasse-7a")
    world = LessonWorld(store)
    world.at("07:51")
    await world.tick()  # started and ready
    (session,) = await store.active_sessions()
    await world.tick()
    asked = (session.id, "anna", session.host_port)
    assert world.client.asked == [asked]  # no build known yet: asked again next tick
    world.client.known = True
    await world.tick()
    await world.tick()
    assert world.client.asked == [asked, asked] and world.client.kept == {session.id}
    world.connections[session.id] = 1  # anna opened it
    await world.tick()
    assert world.client.kept == frozenset()
