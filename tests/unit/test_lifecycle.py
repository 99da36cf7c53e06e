"""Session lifecycle rules, against the real SQLite store and the in-memory provisioner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attr
import pytest
import pytest_twisted
from fakes import IMAGE, FakeProvisioner, desktop
from twisted.internet import defer, task

from desktop_relay.auth import Identity
from desktop_relay.backend import Backend
from desktop_relay.capacity import CapacityLimits
from desktop_relay.engine.interface import ContainerEngineUnavailable, ContainerEvent
from desktop_relay.lifecycle import (
    DesktopNotAllowed,
    DesktopSessions,
    DoesNotFit,
    QueueFull,
    SessionLimitReached,
    UnknownDesktop,
)
from desktop_relay.lifecycle.events import EventHandler
from desktop_relay.lifecycle.reconcile import reconcile
from desktop_relay.lifecycle.steps import step_of
from desktop_relay.store import FAILED, QUEUED, READY, STARTING, STOPPED, DesktopSession, SQLiteStore

PUPIL = Identity("pupil-1", "Pia Pupil", frozenset({"pupils"}))
OTHERS = [Identity(f"pupil-{n}", f"Pupil {n}", frozenset({"pupils"})) for n in range(2, 8)]


class Probe:
    """A readiness probe whose answer the test sets."""

    def __init__(self) -> None:
        self.ready = True
        self.asked: list[Backend] = []

    def __call__(self, backend: Backend) -> defer.Deferred[bool]:
        self.asked.append(backend)
        return defer.succeed(self.ready)


class World:
    def __init__(self, store: SQLiteStore, **overrides: Any) -> None:
        from twisted.internet import reactor

        self.store = store
        self.engine = FakeProvisioner([IMAGE])
        self.probe = Probe()
        self.ended: list[tuple[str, str]] = []
        self.connections: dict[str, int] = {}
        options: dict[str, Any] = dict(
            store=store, provisioner=self.engine, probe=self.probe, clock=reactor,
            desktops={"demo": desktop("demo"), "code": desktop("code", "teachers"),
                      "broken": desktop("broken", image="no/such:image"), "third": desktop("third")},
            instance="test", max_per_user=2, start_timeout=5, stop_timeout=1,
            connected=lambda session_id: self.connections.get(session_id, 0),
            on_session_ended=lambda session_id, reason: self.ended.append((session_id, reason)),
        )
        options.update(overrides)
        self.sessions = DesktopSessions(**options)

    async def settle(self) -> None:
        while self.sessions.working():
            for working in self.sessions.working():
                await working

    async def reconcile(self) -> None:
        await reconcile(self.sessions, self.store)
        await self.settle()

    async def started(self, identity: Identity = PUPIL, name: str = "demo") -> DesktopSession:
        session, _ = await self.sessions.start(identity, name)
        await self.settle()
        return await self.store.get_session(session.id)


def ready_session(world: World, now: float, *, ready_ago: float, **fields: Any) -> DesktopSession:
    return DesktopSession(
        id=f"s-{ready_ago}-{len(fields)}", owner=PUPIL.user_id, desktop="demo", state=READY, reason=None,
        container_id=None, host_port=40000, vnc_password="pw", created=now - ready_ago - 1, updated=now,
        ready_at=now - ready_ago, **fields,
    )


# -- starting -----------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_start_answers_at_once_then_the_container_is_made_and_becomes_ready(store: SQLiteStore) -> None:
    world = World(store)
    session, created = await world.sessions.start(PUPIL, "demo")
    assert created and session.state == STARTING and session.container_id is None
    await world.settle()
    ready = await store.get_session(session.id)
    container = world.engine.container_for(session.id)
    assert container is not None and container.spec.vnc_password == session.vnc_password
    assert ready.state == READY and ready.ready_at is not None and ready.container_id == container.container_id
    assert world.probe.asked[0] == Backend("127.0.0.1", container.host_port, session.vnc_password)


@pytest_twisted.ensureDeferred
async def test_second_start_of_same_desktop_returns_the_running_session(store: SQLiteStore) -> None:
    world = World(store)
    first = await world.started()
    again, created = await world.sessions.start(PUPIL, "demo")
    assert not created and again.id == first.id
    assert len(world.engine.containers) == 1


@pytest_twisted.ensureDeferred
async def test_session_limit_counts_active_sessions(store: SQLiteStore) -> None:
    world = World(store)
    await world.sessions.start(PUPIL, "demo")
    await world.sessions.start(PUPIL, "third")
    with pytest.raises(SessionLimitReached):
        await world.sessions.start(PUPIL, "broken")
    await world.settle()


@pytest_twisted.ensureDeferred
async def test_unknown_and_forbidden_desktops_are_refused_before_anything_is_written(store: SQLiteStore) -> None:
    world = World(store)
    with pytest.raises(UnknownDesktop):
        await world.sessions.start(PUPIL, "nope")
    with pytest.raises(DesktopNotAllowed):
        await world.sessions.start(PUPIL, "code")
    assert await store.sessions_of(PUPIL.user_id) == []
    assert [d.name for d in world.sessions.desktops_for(PUPIL)] == ["demo", "broken", "third"]


@pytest_twisted.ensureDeferred
async def test_start_while_engine_down_waits_in_the_queue_and_starts_when_it_is_back(store: SQLiteStore) -> None:
    world = World(store)
    world.engine.engine_down = True
    session, created = await world.sessions.start(PUPIL, "demo")
    await world.settle()
    assert created and (await store.get_session(session.id)).state == QUEUED
    assert not world.sessions.engine.available
    # Later starts queue without asking the engine at all.
    other, _ = await world.sessions.start(OTHERS[0], "demo")
    assert other.state == QUEUED and world.engine.containers == {}
    world.engine.engine_down = False
    world.sessions.engine.back()
    await world.sessions.drain()
    await world.settle()
    assert (await store.get_session(session.id)).state == READY
    assert (await store.get_session(other.id)).state == READY


@pytest_twisted.ensureDeferred
async def test_ready_session_is_not_handed_back_while_the_engine_is_away(store: SQLiteStore) -> None:
    world = World(store)
    await world.started()
    world.sessions.engine.lost("gone")
    with pytest.raises(ContainerEngineUnavailable):
        await world.sessions.start(PUPIL, "demo")


@pytest_twisted.ensureDeferred
async def test_refused_start_leaves_failed_session_with_reason_and_no_container(store: SQLiteStore) -> None:
    world = World(store)
    session = await world.started(name="broken")
    assert session.state == FAILED and session.end_reason == "start-failed" and session.failure == "image-missing"
    assert "no/such:image" in session.reason and "not on this server" in session.reason
    assert world.engine.containers == {}
    trail = await store.audit_trail()
    assert trail[0]["action"] == "start-failed"


@pytest_twisted.ensureDeferred
async def test_container_exiting_while_starting_fails_with_dockers_reason(store: SQLiteStore) -> None:
    from twisted.internet import reactor

    world = World(store)
    world.probe.ready = False
    session, _ = await world.sessions.start(PUPIL, "demo")
    while world.engine.container_for(session.id) is None:
        await task.deferLater(reactor, 0.01, lambda: None)
    container = world.engine.container_for(session.id)
    container.logs = "starting\nXvnc: fatal error: cannot open display\n"
    world.engine.exit(container.container_id, oom=True)
    await world.settle()
    failed = await store.get_session(session.id)
    assert failed.state == FAILED and failed.failure == "out-of-memory"
    assert "ran out of memory" in failed.reason and "cannot open display" in failed.reason
    assert container.container_id in world.engine.removed


@pytest_twisted.ensureDeferred
async def test_container_exiting_while_starting_fails_the_start_through_the_event_too(store: SQLiteStore) -> None:
    from twisted.internet import reactor

    world = World(store)
    handler = EventHandler(world.sessions, store, reactor)
    world.engine.follow_events("test", handler, lambda: None, lambda reason: None)
    world.probe.ready = False
    session, _ = await world.sessions.start(PUPIL, "demo")
    while world.engine.container_for(session.id) is None:
        await task.deferLater(reactor, 0.01, lambda: None)
    container = world.engine.container_for(session.id)
    container.logs = "Xvnc: fatal error: cannot open display\n"
    world.engine.exit(container.container_id, exit_code=1)
    for pending in handler.pending():
        await pending
    await world.settle()
    failed = await store.get_session(session.id)
    assert (failed.state, failed.end_reason, failed.failure) == (FAILED, "start-failed", "crashed")
    assert "exited with code 1" in failed.reason and "cannot open display" in failed.reason


@pytest_twisted.ensureDeferred
async def test_desktop_that_never_answers_fails_after_the_start_timeout(store: SQLiteStore) -> None:
    world = World(store, start_timeout=0.3)
    world.probe.ready = False
    session = await world.started()
    assert session.state == FAILED and "did not become ready within" in session.reason
    assert session.failure == "not-ready"
    assert world.engine.containers == {}


@pytest_twisted.ensureDeferred
async def test_a_start_passes_through_its_steps_and_each_step_wakes_the_long_poll(store: SQLiteStore) -> None:
    world = World(store)
    answer: defer.Deferred[bool] = defer.Deferred()
    world.sessions._probe = lambda backend: answer
    session, _ = await world.sessions.start(PUPIL, "demo")
    assert step_of(session) == ("creating", session.updated)
    # The container is made: the page waiting on the session is told, and now waits for the desktop.
    await world.sessions.watch.wait(session.id, 10)
    waiting = await store.get_session(session.id)
    assert waiting.container_id is not None and step_of(waiting) == ("waiting", waiting.updated)
    assert waiting.updated >= session.updated
    woken = world.sessions.watch.wait(session.id, 10)
    answer.callback(True)
    await woken
    await world.settle()
    ready = await store.get_session(session.id)
    assert step_of(ready) == ("ready", ready.ready_at)
    stopped = await world.sessions.stop(ready, PUPIL.user_id)
    assert step_of(stopped) == (None, None)


@pytest_twisted.ensureDeferred
async def test_a_queued_start_is_at_the_queued_step_since_it_joined_the_queue(store: SQLiteStore) -> None:
    world = World(store, limits=CapacityLimits(max_total=1))
    await world.started()
    queued, _ = await world.sessions.start(OTHERS[0], "demo")
    assert queued.state == QUEUED and step_of(queued) == ("queued", queued.created)


# -- stopping -----------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_stop_removes_container_tells_the_bridges_and_records_why(store: SQLiteStore) -> None:
    world = World(store)
    session = await world.started()
    stopped = await world.sessions.stop(session, PUPIL.user_id)
    assert stopped.state == STOPPED and stopped.end_reason == "user"
    assert world.engine.containers == {}
    assert world.ended == [(session.id, "Stopped by you.")]
    # Stopping again changes nothing and removes nothing twice.
    again = await world.sessions.stop(stopped, PUPIL.user_id)
    assert again.state == STOPPED and world.engine.removed == [session.container_id]


@pytest_twisted.ensureDeferred
async def test_stop_while_engine_down_stays_stopping_until_reconcile(store: SQLiteStore) -> None:
    world = World(store)
    session = await world.started()
    world.engine.engine_down = True
    with pytest.raises(ContainerEngineUnavailable):
        await world.sessions.stop(session, PUPIL.user_id)
    assert (await store.get_session(session.id)).state == "stopping"
    world.engine.engine_down = False
    await world.reconcile()
    assert (await store.get_session(session.id)).state == STOPPED
    assert world.engine.containers == {}


# -- capacity and the queue ---------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_queue_is_first_come_first_served_and_drains_as_capacity_frees(store: SQLiteStore) -> None:
    world = World(store, limits=CapacityLimits(max_total=1))
    first = await world.started(OTHERS[0])
    second, _ = await world.sessions.start(OTHERS[1], "demo")
    third, _ = await world.sessions.start(OTHERS[2], "demo")
    assert first.state == READY and second.state == QUEUED and third.state == QUEUED
    assert await store.queue_positions() == {second.id: 1, third.id: 2}
    await world.sessions.stop(first, "admin")
    await world.settle()
    assert (await store.get_session(second.id)).state == READY
    assert await store.queue_positions() == {third.id: 1}
    cancelled = await world.sessions.stop(await store.get_session(third.id), OTHERS[2].user_id)
    assert cancelled.state == STOPPED and cancelled.end_reason == "user"
    assert await store.queue_positions() == {}
    assert len(world.engine.containers) == 1


@pytest_twisted.ensureDeferred
async def test_full_queue_refuses_and_writes_nothing(store: SQLiteStore) -> None:
    world = World(store, limits=CapacityLimits(max_total=1, max_queued=1))
    await world.started(OTHERS[0])
    await world.sessions.start(OTHERS[1], "demo")
    with pytest.raises(QueueFull):
        await world.sessions.start(OTHERS[2], "demo")
    assert await store.sessions_of(OTHERS[2].user_id) == []


@pytest_twisted.ensureDeferred
async def test_a_full_desktop_type_does_not_hold_up_other_desktops(store: SQLiteStore) -> None:
    desktops = {"demo": desktop("demo", max_sessions=1), "third": desktop("third")}
    world = World(store, desktops=desktops, limits=CapacityLimits(per_desktop={"demo": 1}))
    await world.started(OTHERS[0], "demo")
    waiting, _ = await world.sessions.start(OTHERS[1], "demo")
    other = await world.started(OTHERS[2], "third")
    assert waiting.state == QUEUED and other.state == READY


@pytest_twisted.ensureDeferred
async def test_memory_budget_queues_what_does_not_fit_and_refuses_what_never_can(store: SQLiteStore) -> None:
    desktops = {"demo": desktop("demo", memory="1g"), "big": desktop("big", memory="4g")}
    world = World(store, desktops=desktops, limits=CapacityLimits(memory_budget=int(2.5 * 2**30)))
    await world.started(OTHERS[0])
    await world.started(OTHERS[1])
    third, _ = await world.sessions.start(OTHERS[2], "demo")
    assert third.state == QUEUED
    with pytest.raises(DoesNotFit):
        await world.sessions.start(OTHERS[3], "big")


@pytest_twisted.ensureDeferred
async def test_starts_at_once_are_bounded_by_max_starting(store: SQLiteStore) -> None:
    world = World(store, limits=CapacityLimits(max_starting=2))
    world.probe.ready = False
    states = [(await world.sessions.start(who, "demo"))[0].state for who in OTHERS[:4]]
    assert states == [STARTING, STARTING, QUEUED, QUEUED]
    world.probe.ready = True
    await world.settle()
    # Each ready desktop frees a starting slot; the queue drains in order.
    await world.settle()
    assert [s.state for s in await store.sessions_in(READY)] == [READY] * 4


# -- engine events and reconcile ----------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_a_container_that_dies_ends_its_session_with_why(store: SQLiteStore) -> None:
    from twisted.internet import reactor

    world = World(store)
    handler = EventHandler(world.sessions, store, reactor)
    world.engine.follow_events("test", handler, lambda: None, lambda reason: None)
    killed = await world.started(OTHERS[0])
    starved = await world.started(OTHERS[1])
    world.engine.exit(killed.container_id, exit_code=137)
    world.engine.exit(starved.container_id, oom=True)
    for pending in handler.pending():
        await pending
    killed, starved = await store.get_session(killed.id), await store.get_session(starved.id)
    assert (killed.state, killed.end_reason) == (STOPPED, "container-exited")
    assert "crashed or was killed" in killed.reason
    assert (starved.end_reason, starved.reason) == ("out-of-memory", "The desktop ran out of memory and was stopped.")
    assert {sid for sid, _ in world.ended} == {killed.id, starved.id}
    assert world.engine.containers == {}


@pytest_twisted.ensureDeferred
async def test_a_container_stopped_as_the_engine_shuts_down_ends_engine_lost(store: SQLiteStore) -> None:
    from twisted.internet import reactor

    world = World(store)
    handler = EventHandler(world.sessions, store, reactor, shutdown_grace=0.05)
    world.engine.follow_events("test", handler, lambda: None, lambda reason: None)
    lost, stopped = await world.started(OTHERS[0]), await world.started(OTHERS[1])
    # The engine signals its containers, they exit cleanly, then its event stream ends.
    handler(ContainerEvent(lost.container_id, lost.id, "kill", None, 0.0))
    world.engine.exit(lost.container_id, exit_code=0)
    world.sessions.engine.lost("the engine closed the event stream")
    for pending in handler.pending():
        await pending
    assert (await store.get_session(lost.id)).state == READY
    world.sessions.engine.back()
    await world.reconcile()
    assert (await store.get_session(lost.id)).end_reason == "engine-lost"
    # An admin's `docker stop` while the engine stays: the session ends once the grace is over.
    handler(ContainerEvent(stopped.container_id, stopped.id, "kill", None, 0.0))
    world.engine.exit(stopped.container_id, exit_code=0)
    for pending in handler.pending():
        await pending
    ended = await store.get_session(stopped.id)
    assert (ended.state, ended.end_reason) == (STOPPED, "container-exited")


@pytest_twisted.ensureDeferred
async def test_a_container_appearing_for_a_session_that_is_not_starting_is_removed(store: SQLiteStore) -> None:
    from twisted.internet import reactor

    world = World(store)
    handler = EventHandler(world.sessions, store, reactor)
    session = await world.started()
    await world.sessions.stop(session, PUPIL.user_id)
    # The engine carries out a create it was asked for long ago (a hung engine, resumed).
    late = await world.engine.start(attr.evolve(world.engine.container_for(session.id) or _spec(world, session)))
    handler(ContainerEvent(late.container_id, session.id, "start", None, 0.0))
    for pending in handler.pending():
        await pending
    assert world.engine.containers == {}


def _spec(world: World, session: DesktopSession):  # type: ignore[no-untyped-def]
    from desktop_relay.engine.interface import ContainerSpec

    return ContainerSpec(session.id, session.owner, "test", world.sessions.desktop("demo"), session.vnc_password)


@pytest_twisted.ensureDeferred
async def test_reconcile_after_an_engine_outage_says_engine_lost(store: SQLiteStore) -> None:
    world = World(store)
    session = await world.started()
    world.sessions.engine.lost("the engine went away")
    world.engine.containers.clear()  # the engine restarted without it
    world.sessions.engine.back()
    await world.reconcile()
    ended = await store.get_session(session.id)
    assert (ended.state, ended.end_reason) == (STOPPED, "engine-lost")
    assert world.sessions.engine.lost_at is None


@pytest_twisted.ensureDeferred
async def test_reconcile_ends_sessions_whose_container_vanished(store: SQLiteStore) -> None:
    world = World(store)
    session = await world.started()
    world.engine.containers.clear()
    await world.reconcile()
    ended = await store.get_session(session.id)
    assert ended.state == STOPPED and ended.end_reason == "container-exited"
    assert world.ended[0][0] == session.id


@pytest_twisted.ensureDeferred
async def test_reconcile_requeues_a_start_the_relay_never_finished(store: SQLiteStore) -> None:
    world = World(store)
    now = world.sessions.now()
    crashed = DesktopSession(id="crashed", owner=PUPIL.user_id, desktop="demo", state=STARTING, reason=None,
                             container_id=None, host_port=None, vnc_password="pw", created=now, updated=now)
    await store.add_session(crashed)
    await world.reconcile()
    assert (await store.get_session("crashed")).state == READY
    assert world.engine.container_for("crashed") is not None


@pytest_twisted.ensureDeferred
async def test_reconcile_restarts_a_start_the_relay_left_between_create_and_start(store: SQLiteStore) -> None:
    world = World(store)
    now = world.sessions.now()
    crashed = DesktopSession(id="crashed", owner=PUPIL.user_id, desktop="demo", state=STARTING, reason=None,
                             container_id=None, host_port=None, vnc_password="pw", created=now, updated=now)
    await store.add_session(crashed)
    husk = (await world.engine.start(_spec(world, crashed))).container_id
    world.engine.containers[husk].status = "created"
    await world.reconcile()
    assert (await store.get_session("crashed")).state == READY
    assert husk in world.engine.removed and world.engine.container_for("crashed").status == "running"


@pytest_twisted.ensureDeferred
async def test_reconcile_adopts_a_running_container_the_store_lost(store: SQLiteStore, tmp_path: Path) -> None:
    from twisted.internet import reactor

    world = World(store)
    session = await world.started()
    # A new relay with an empty database, the same engine.
    fresh = SQLiteStore(tmp_path / "fresh.sqlite3", reactor)
    await fresh.open()
    try:
        other = World(fresh, provisioner=world.engine)
        await other.reconcile()
        adopted = await fresh.get_session(session.id)
        assert adopted.state == READY and adopted.owner == PUPIL.user_id
        assert adopted.vnc_password == session.vnc_password
    finally:
        await fresh.close()


@pytest_twisted.ensureDeferred
async def test_reconcile_removes_containers_of_ended_sessions(store: SQLiteStore) -> None:
    world = World(store)
    session = await world.started()
    await store.update_session(session.id, 0, state=STOPPED)
    await world.reconcile()
    assert world.engine.containers == {}


# -- idle, lifetime, disconnect -----------------------------------------------------------

def policy_world(store: SQLiteStore, clock: task.Clock, **policy: Any) -> World:
    return World(store, clock=clock, desktops={"demo": desktop("demo", **policy)})


@pytest_twisted.ensureDeferred
async def test_idle_session_is_warned_then_stopped_and_input_cancels_the_warning(store: SQLiteStore) -> None:
    clock = task.Clock()
    clock.advance(100_000)
    world = policy_world(store, clock, idle_timeout=600, idle_warning=120, disconnect_grace=None)
    session = ready_session(world, clock.seconds(), ready_ago=500)
    await store.add_session(session)
    world.connections[session.id] = 1
    await world.sessions.reap()
    timing = world.sessions.timing_of(await store.get_session(session.id))
    assert timing.warning == ("idle", session.ready_at + 600) and timing.due is None
    world.sessions.input_seen(session.id)
    assert world.sessions.timing_of(await store.get_session(session.id)).warning is None
    clock.advance(599)
    await world.sessions.reap()
    assert (await store.get_session(session.id)).state == READY
    clock.advance(2)
    await world.sessions.reap()
    stopped = await store.get_session(session.id)
    assert (stopped.state, stopped.end_reason) == (STOPPED, "idle")
    assert stopped.reason == "Stopped after 10 minutes without input."


@pytest_twisted.ensureDeferred
async def test_last_input_is_kept_in_the_store_for_the_next_relay(store: SQLiteStore) -> None:
    clock = task.Clock()
    clock.advance(100_000)
    world = policy_world(store, clock, idle_timeout=600)
    session = ready_session(world, clock.seconds(), ready_ago=500)
    await store.add_session(session)
    world.sessions.input_seen(session.id)
    await world.sessions.flush_activity()
    assert (await store.get_session(session.id)).last_input == clock.seconds()
    # A restarted relay has no memory of it, and still does not stop the desktop.
    restarted = policy_world(store, clock, idle_timeout=600)
    clock.advance(300)
    await restarted.sessions.reap()
    assert (await store.get_session(session.id)).state == READY


@pytest_twisted.ensureDeferred
async def test_lifetime_ends_even_a_busy_session(store: SQLiteStore) -> None:
    clock = task.Clock()
    clock.advance(100_000)
    world = policy_world(store, clock, max_lifetime=3600, idle_timeout=None)
    session = ready_session(world, clock.seconds(), ready_ago=3600)
    await store.add_session(session)
    world.connections[session.id] = 1
    world.sessions.input_seen(session.id)
    await world.sessions.reap()
    stopped = await store.get_session(session.id)
    assert (stopped.state, stopped.end_reason) == (STOPPED, "lifetime")


@pytest_twisted.ensureDeferred
async def test_a_session_without_a_browser_is_stopped_after_the_grace(store: SQLiteStore) -> None:
    clock = task.Clock()
    clock.advance(100_000)
    world = policy_world(store, clock, disconnect_grace=60, idle_timeout=None)
    watched = ready_session(world, clock.seconds(), ready_ago=100)
    left = attr.evolve(ready_session(world, clock.seconds(), ready_ago=100), id="left")
    await store.add_session(watched)
    await store.add_session(left)
    world.connections[watched.id] = 1
    await world.sessions.reap()
    assert (await store.get_session(watched.id)).state == READY
    gone = await store.get_session("left")
    assert (gone.state, gone.end_reason) == (STOPPED, "disconnected")
    # Once its browser goes, the grace counts from the last moment it was seen.
    world.connections[watched.id] = 0
    clock.advance(59)
    await world.sessions.reap()
    assert (await store.get_session(watched.id)).state == READY
    clock.advance(2)
    await world.sessions.reap()
    assert (await store.get_session(watched.id)).end_reason == "disconnected"
