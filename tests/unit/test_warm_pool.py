"""The warm pool against the real SQLite store and the in-memory engine, on a task.Clock: filling
within capacity and behind the queue, the atomic claim, pool_max_age, and what a restart finds."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from fakes import IMAGE, FakeProvisioner, desktop
from twisted.internet import defer, task

from desktop_relay.auth import Identity
from desktop_relay.backend import Backend
from desktop_relay.capacity import CapacityLimits
from desktop_relay.engine.interface import ContainerSpec
from desktop_relay.lifecycle import DesktopSessions
from desktop_relay.lifecycle.events import EventHandler
from desktop_relay.lifecycle.pool import FIRST_RETRY, WarmPool, fingerprint
from desktop_relay.lifecycle.reconcile import reconcile
from desktop_relay.metrics import RelayMetrics
from desktop_relay.store import QUEUED, READY, SQLiteStore
from desktop_relay.store.pool import POOL_READY, POOL_STARTING

PUPILS = [Identity(f"pupil-{n}", f"Pupil {n}", frozenset({"pupils"})) for n in range(1, 6)]


class Probe:
    """A readiness probe whose answer the test sets."""

    def __init__(self) -> None:
        self.ready = True

    def __call__(self, backend: Backend) -> defer.Deferred[bool]:
        return defer.succeed(self.ready)


class PoolWorld:
    """One relay process's lifecycle with a pool, on a store and engine that may outlive it."""

    def __init__(self, store: SQLiteStore, engine: FakeProvisioner | None = None, clock: task.Clock | None = None,
                 pool_size: int = 2, **limits: Any) -> None:
        self.store = store
        self.clock = clock or task.Clock()
        if clock is None:
            self.clock.advance(1_000_000)
        self.engine = engine or FakeProvisioner([IMAGE], clock=self.clock)
        self.probe = Probe()
        self.demo = desktop("demo", home="none", pool_size=pool_size, pool_max_age=3600.0)
        self.sessions = DesktopSessions(
            store=store, provisioner=self.engine, probe=self.probe, clock=self.clock,
            desktops={"demo": self.demo, "plain": desktop("plain")}, instance="test", max_per_user=2,
            start_timeout=5, stop_timeout=1, limits=CapacityLimits(**limits),
        )
        self.metrics = RelayMetrics()
        self.pool = WarmPool(self.sessions, store, self.clock, self.probe, start_timeout=5, metrics=self.metrics)
        self.events = EventHandler(self.sessions, store, self.clock, pool=self.pool)
        self.follower = self.engine.follow_events("test", self.events, lambda: None, lambda reason: None)

    async def settle(self) -> None:
        while self.sessions.working() or self.pool.working() or self.events.pending():
            for working in [*self.sessions.working(), *self.pool.working(), *self.events.pending()]:
                await working

    async def maintain(self) -> None:
        await self.pool.maintain()
        await self.settle()

    async def start(self, identity: Identity, name: str = "demo") -> Any:
        session, _ = await self.sessions.start(identity, name)
        await self.settle()
        return await self.store.get_session(session.id)

    def pooled_containers(self) -> list[str]:
        return [c.container_id for c in self.engine.containers.values() if c.spec.pooled]

    async def leave(self) -> None:
        await self.follower.stop()


@pytest_twisted.ensureDeferred
async def test_the_pool_fills_to_pool_size_with_unowned_pooled_containers(store: SQLiteStore) -> None:
    world = PoolWorld(store)
    await world.maintain()
    entries = await store.pooled()
    assert [e.state for e in entries] == [POOL_READY, POOL_READY]
    containers = [world.engine.containers[e.container_id] for e in entries]
    assert all(c.spec.pooled and c.spec.owner == "" and c.spec.mounts == () for c in containers)
    assert all(e.fingerprint == fingerprint(world.demo) for e in entries)
    await world.maintain()
    assert len(world.pooled_containers()) == 2  # full: nothing more is started
    assert world.metrics.registry.get_sample_value(
        "desktop_relay_pool_containers", {"desktop": "demo", "state": "ready"}) == 2
    await world.leave()


@pytest_twisted.ensureDeferred
async def test_a_start_takes_a_ready_pooled_container_and_the_pool_refills(store: SQLiteStore) -> None:
    world = PoolWorld(store, pool_size=1)
    await world.maintain()
    (entry,) = await store.pooled()
    session = await world.start(PUPILS[0])
    assert session.state == READY and session.container_id == entry.container_id
    assert session.vnc_password == entry.vnc_password and session.host_port == entry.host_port
    assert len(world.engine.containers) == 1  # no container was made for the start itself
    assert await store.pooled() == []
    trail = await store.audit_trail()
    assert trail[0]["action"] == "pool-claim" and trail[0]["target"] == session.id
    await world.maintain()
    (fresh,) = await store.pooled()
    assert fresh.id != entry.id and fresh.state == POOL_READY
    await world.leave()


@pytest_twisted.ensureDeferred
async def test_two_users_starting_at_once_never_get_the_same_pooled_container(store: SQLiteStore) -> None:
    world = PoolWorld(store, pool_size=1)
    await world.maintain()
    first, second = await defer.gatherResults([
        defer.ensureDeferred(world.start(PUPILS[0])), defer.ensureDeferred(world.start(PUPILS[1])),
    ])
    assert first.state == second.state == READY
    assert first.container_id != second.container_id
    (claimant,) = (await store.pool_claims()).values()
    assert claimant in (first.id, second.id)
    await world.leave()


@pytest_twisted.ensureDeferred
async def test_pool_containers_count_towards_the_limits_and_queued_users_come_before_the_refill(
    store: SQLiteStore,
) -> None:
    world = PoolWorld(store, pool_size=2, max_total=2)
    await world.maintain()
    a = await world.start(PUPILS[0])
    await world.maintain()
    # a's session and the remaining pooled container fill the server: nothing is added.
    assert len(await store.pooled()) == 1 and len(world.engine.containers) == 2
    b = await world.start(PUPILS[1])
    c = await world.start(PUPILS[2])
    assert b.state == READY and c.state == QUEUED
    await world.sessions.stop(a, PUPILS[0].user_id)
    await world.settle()
    await world.maintain()
    # The freed place went to the queued start, not to the pool.
    assert (await store.get_session(c.id)).state == READY
    assert await store.pooled() == []
    await world.leave()


@pytest_twisted.ensureDeferred
async def test_a_queued_start_takes_the_pooled_container_the_moment_it_is_ready(store: SQLiteStore) -> None:
    world = PoolWorld(store, pool_size=1, max_total=1)
    world.probe.ready = False
    await world.pool.maintain()
    (entry,) = await store.pooled()
    assert entry.state == POOL_STARTING
    session, _ = await world.sessions.start(PUPILS[0], "demo")
    assert session.state == QUEUED  # the starting pool container holds the only place
    world.probe.ready = True
    world.clock.advance(0.1)
    await world.settle()
    taken = await store.get_session(session.id)
    assert taken.state == READY and taken.container_id == world.pooled_containers()[0]
    await world.leave()


@pytest_twisted.ensureDeferred
async def test_pooled_containers_older_than_pool_max_age_are_replaced(store: SQLiteStore) -> None:
    world = PoolWorld(store, pool_size=2)
    await world.maintain()
    old = set(world.pooled_containers())
    world.clock.advance(3601)
    await world.maintain()
    # Fresh ones first; the old ones served until they were ready, then went.
    await world.maintain()
    assert len(world.pooled_containers()) == 2 and not old & set(world.pooled_containers())
    removed = [line for line in await store.audit_trail() if line["action"] == "pool-remove"]
    assert len(removed) == 2 and all("pool: older than pool_max_age" in line["detail"] for line in removed)
    await world.leave()


@pytest_twisted.ensureDeferred
async def test_an_aged_container_gives_its_place_to_its_replacement_when_the_server_is_full(
    store: SQLiteStore,
) -> None:
    world = PoolWorld(store, pool_size=1, max_total=1)
    await world.maintain()
    (old,) = world.pooled_containers()
    world.clock.advance(3601)
    await world.maintain()
    (new,) = world.pooled_containers()
    assert new != old and (await store.pooled())[0].state == POOL_READY
    await world.leave()


@pytest_twisted.ensureDeferred
async def test_a_changed_desktop_replaces_its_pooled_containers(store: SQLiteStore) -> None:
    world = PoolWorld(store, pool_size=1)
    await world.maintain()
    (old,) = world.pooled_containers()
    changed = desktop("demo", home="none", pool_size=1, memory="1g")
    world.sessions.reconfigure({"demo": changed}, world.sessions.limits, 2)
    await world.maintain()
    (new,) = world.pooled_containers()
    assert new != old and world.engine.containers[new].spec.desktop.memory == "1g"
    await world.leave()


@pytest_twisted.ensureDeferred
async def test_a_relay_restart_neither_loses_nor_hands_out_twice_a_pooled_container(store: SQLiteStore) -> None:
    before = PoolWorld(store, pool_size=2)
    await before.maintain()
    taken = await before.start(PUPILS[0])
    await before.leave()
    # The next relay process: same database, same engine, nothing in memory.
    after = PoolWorld(store, engine=before.engine, clock=before.clock, pool_size=2)
    await reconcile(after.sessions, store, after.pool)
    await after.settle()
    assert before.engine.removed == []
    assert (await store.get_session(taken.id)).container_id == taken.container_id
    (waiting,) = await store.pooled()
    second = await after.start(PUPILS[1])
    assert second.container_id == waiting.container_id != taken.container_id
    # The event stream finds a claimed container's session through the pool: its death ends it.
    before.engine.exit(taken.container_id, 1)
    await after.settle()
    assert (await store.get_session(taken.id)).state == "stopped"
    await after.leave()


@pytest_twisted.ensureDeferred
async def test_reconcile_removes_a_pooled_container_the_pool_does_not_know(store: SQLiteStore) -> None:
    world = PoolWorld(store, pool_size=0)
    stray = (await world.engine.start(ContainerSpec("lost-pool-id", "", "test", world.demo, "pw", pooled=True)))
    await reconcile(world.sessions, store, world.pool)
    assert world.engine.removed == [stray.container_id]
    assert await store.active_sessions() == []  # never adopted as somebody's session
    await world.leave()


@pytest_twisted.ensureDeferred
async def test_a_pooled_container_that_dies_leaves_the_pool_and_the_refill_waits(store: SQLiteStore) -> None:
    world = PoolWorld(store, pool_size=1)
    await world.maintain()
    (container,) = world.pooled_containers()
    world.engine.exit(container, 1)
    await world.settle()
    assert await store.pooled() == []
    await world.maintain()
    assert world.pooled_containers() == []  # backing off
    world.clock.advance(FIRST_RETRY)
    await world.maintain()
    assert len(world.pooled_containers()) == 1
    await world.leave()


@pytest_twisted.ensureDeferred
async def test_a_pool_container_that_cannot_start_is_not_tried_again_every_tick(store: SQLiteStore) -> None:
    world = PoolWorld(store, pool_size=1)
    world.engine.fail_next_start("no room on the disk")
    await world.maintain()
    assert await store.pooled() == [] and world.pooled_containers() == []
    world.clock.advance(FIRST_RETRY - 1)
    await world.maintain()
    assert world.pooled_containers() == []
    world.clock.advance(1)
    await world.maintain()
    assert len(world.pooled_containers()) == 1
    await world.leave()


@pytest_twisted.ensureDeferred
async def test_a_pooled_container_still_starting_at_a_restart_is_waited_for_not_lost(store: SQLiteStore) -> None:
    before = PoolWorld(store, pool_size=1)
    before.probe.ready = False
    await before.pool.maintain()
    for working in before.pool.working():
        working.cancel()  # the relay process stops while its pool container starts
    await before.leave()
    after = PoolWorld(store, engine=before.engine, clock=before.clock, pool_size=1)
    await reconcile(after.sessions, store, after.pool)
    await after.maintain()
    (entry,) = await store.pooled()
    assert entry.state == POOL_READY and entry.container_id == before.pooled_containers()[0]
    assert before.engine.removed == []
    await after.leave()


@pytest_twisted.ensureDeferred
async def test_aged_containers_keep_serving_while_their_replacements_start(store: SQLiteStore) -> None:
    world = PoolWorld(store, pool_size=3)
    await world.maintain()
    old = set(world.pooled_containers())
    world.clock.advance(3601)
    bigger = desktop("demo", home="none", pool_size=4, pool_max_age=3600.0)
    world.sessions.reconfigure({"demo": bigger}, world.sessions.limits, 2)
    world.probe.ready = False
    await world.pool.maintain()
    # Four fresh ones starting, none ready: all three old ones still serve.
    assert old <= set(world.pooled_containers()) and len(world.pooled_containers()) == 7
    world.probe.ready = True
    world.clock.advance(0.1)
    await world.settle()
    await world.maintain()
    assert not old & set(world.pooled_containers()) and len(world.pooled_containers()) == 4
    await world.leave()
