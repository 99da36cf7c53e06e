"""Session lifecycle rules, against the real SQLite store and the in-memory provisioner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from fakes import IMAGE, FakeProvisioner, desktop
from twisted.internet import defer

from desktop_relay.auth import Identity
from desktop_relay.backend import Backend
from desktop_relay.containers import ContainerEngineUnavailable
from desktop_relay.lifecycle import (
    DesktopNotAllowed,
    DesktopSessions,
    SessionLimitReached,
    UnknownDesktop,
)
from desktop_relay.store import FAILED, READY, STARTING, STOPPED, SQLiteStore

PUPIL = Identity("pupil-1", "Pia Pupil", frozenset({"pupils"}))


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
        self.ended: list[str] = []
        options: dict[str, Any] = dict(
            store=store, provisioner=self.engine, probe=self.probe, clock=reactor,
            desktops={"demo": desktop("demo"), "code": desktop("code", "teachers"),
                      "broken": desktop("broken", image="no/such:image"), "third": desktop("third")},
            instance="test", max_per_user=2, start_timeout=5, stop_timeout=1,
            on_session_ended=self.ended.append,
        )
        options.update(overrides)
        self.sessions = DesktopSessions(**options)

    async def settle(self) -> None:
        for waiting in self.sessions.waiting():
            await waiting


@pytest_twisted.ensureDeferred
async def test_start_creates_container_then_becomes_ready(store: SQLiteStore) -> None:
    world = World(store)
    session, created = await world.sessions.start(PUPIL, "demo")
    assert created and session.state == STARTING and session.container_id
    container = world.engine.container_for(session.id)
    assert container is not None and container.spec.vnc_password == session.vnc_password
    await world.settle()
    assert (await store.get_session(session.id)).state == READY
    assert world.probe.asked[0] == Backend("127.0.0.1", container.host_port, session.vnc_password)


@pytest_twisted.ensureDeferred
async def test_second_start_of_same_desktop_returns_the_running_session(store: SQLiteStore) -> None:
    world = World(store)
    first, _ = await world.sessions.start(PUPIL, "demo")
    again, created = await world.sessions.start(PUPIL, "demo")
    assert not created and again.id == first.id
    assert len(world.engine.containers) == 1
    await world.settle()


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
async def test_engine_down_leaves_no_row(store: SQLiteStore) -> None:
    world = World(store)
    world.engine.engine_down = True
    with pytest.raises(ContainerEngineUnavailable):
        await world.sessions.start(PUPIL, "demo")
    assert await store.sessions_of(PUPIL.user_id) == []


@pytest_twisted.ensureDeferred
async def test_refused_start_leaves_failed_session_with_reason_and_no_container(store: SQLiteStore) -> None:
    world = World(store)
    session, created = await world.sessions.start(PUPIL, "broken")
    assert created and session.state == FAILED
    assert "no/such:image" in session.reason and "not on this server" in session.reason
    assert world.engine.containers == {}
    trail = await store.audit_trail()
    assert trail[0]["action"] == "start-failed"


@pytest_twisted.ensureDeferred
async def test_container_exiting_while_starting_fails_with_dockers_reason(store: SQLiteStore) -> None:
    world = World(store)
    world.probe.ready = False
    session, _ = await world.sessions.start(PUPIL, "demo")
    container = world.engine.container_for(session.id)
    container.logs = "starting\nXvnc: fatal error: cannot open display\n"
    world.engine.exit(session.container_id, oom=True)
    await world.settle()
    failed = await store.get_session(session.id)
    assert failed.state == FAILED
    assert "ran out of memory" in failed.reason and "cannot open display" in failed.reason
    assert session.container_id in world.engine.removed


@pytest_twisted.ensureDeferred
async def test_desktop_that_never_answers_fails_after_the_start_timeout(store: SQLiteStore) -> None:
    world = World(store, start_timeout=0.3)
    world.probe.ready = False
    session, _ = await world.sessions.start(PUPIL, "demo")
    await world.settle()
    failed = await store.get_session(session.id)
    assert failed.state == FAILED and "did not become ready within" in failed.reason
    assert world.engine.containers == {}


@pytest_twisted.ensureDeferred
async def test_stop_removes_container_and_tells_the_bridges(store: SQLiteStore) -> None:
    world = World(store)
    session, _ = await world.sessions.start(PUPIL, "demo")
    await world.settle()
    stopped = await world.sessions.stop(await store.get_session(session.id), PUPIL.user_id)
    assert stopped.state == STOPPED
    assert world.engine.containers == {}
    assert world.ended == [session.id]
    # Stopping again changes nothing and removes nothing twice.
    again = await world.sessions.stop(stopped, PUPIL.user_id)
    assert again.state == STOPPED and world.engine.removed == [session.container_id]


@pytest_twisted.ensureDeferred
async def test_stop_while_engine_down_stays_stopping_until_reconcile(store: SQLiteStore) -> None:
    world = World(store)
    session, _ = await world.sessions.start(PUPIL, "demo")
    await world.settle()
    world.engine.engine_down = True
    with pytest.raises(ContainerEngineUnavailable):
        await world.sessions.stop(await store.get_session(session.id), PUPIL.user_id)
    assert (await store.get_session(session.id)).state == "stopping"
    world.engine.engine_down = False
    await world.sessions.reconcile()
    assert (await store.get_session(session.id)).state == STOPPED
    assert world.engine.containers == {}


@pytest_twisted.ensureDeferred
async def test_reconcile_ends_sessions_whose_container_vanished(store: SQLiteStore) -> None:
    world = World(store)
    session, _ = await world.sessions.start(PUPIL, "demo")
    await world.settle()
    world.engine.containers.clear()
    await world.sessions.reconcile()
    ended = await store.get_session(session.id)
    assert ended.state == STOPPED and "no longer exists" in ended.reason
    assert world.ended == [session.id]


@pytest_twisted.ensureDeferred
async def test_reconcile_adopts_a_running_container_the_store_lost(store: SQLiteStore, tmp_path: Path) -> None:
    from twisted.internet import reactor

    world = World(store)
    session, _ = await world.sessions.start(PUPIL, "demo")
    await world.settle()
    # A new relay with an empty database, the same engine.
    fresh = SQLiteStore(tmp_path / "fresh.sqlite3", reactor)
    await fresh.open()
    try:
        other = World(fresh)
        other.engine = world.engine
        other.sessions._provisioner = world.engine
        await other.sessions.reconcile()
        await other.settle()
        adopted = await fresh.get_session(session.id)
        assert adopted.state == READY and adopted.owner == PUPIL.user_id
        assert adopted.vnc_password == session.vnc_password
    finally:
        await fresh.close()


@pytest_twisted.ensureDeferred
async def test_reconcile_removes_containers_of_ended_sessions(store: SQLiteStore) -> None:
    world = World(store)
    session, _ = await world.sessions.start(PUPIL, "demo")
    await world.settle()
    await store.update_session(session.id, 0, state=STOPPED)
    await world.sessions.reconcile()
    assert world.engine.containers == {}
