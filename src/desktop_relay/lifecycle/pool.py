"""The warm pool: `pool_size` containers per desktop started ahead, with no user's data, so a start
takes one that is ready instead of waiting for a container (docs/pool.md).

The store decides who gets which (store/pool.py: a claim is part of the queue's promotion, one
transaction); this module keeps the pool filled within capacity and behind everyone queued,
replaces containers older than `pool_max_age` or started with other settings, and brings the
pool's rows back to what the engine has after a restart or an outage.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections import Counter
from collections.abc import Callable, Generator
from typing import Any

import attr
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..backend import Backend
from ..config import DesktopType
from ..engine.interface import ContainerEngineUnavailable, ContainerInfo, ContainerSpec, ContainerStartFailed
from ..metrics import RelayMetrics
from ..store import PoolContainer, SQLiteStore
from ..store.pool import POOL_READY, POOL_STARTING
from .launch import PROBE_INTERVAL, PROBE_INTERVALS
from .reasons import POOL
from .sessions import DesktopSessions, new_session_id

# After a pooled container failed to start or died, that desktop's pool waits this long before
# the next try, doubling up to the maximum: a broken image must not be started every tick.
FIRST_RETRY = 30.0
MAX_RETRY = 600.0


def fingerprint(desktop: DesktopType) -> str:
    """What a container of this desktop was started with; a pooled container whose desktop's
    settings changed (a reload, or relay.ini edited before a restart) is replaced."""
    made_with = {
        "image": desktop.image, "shm_size": desktop.shm_size, "memory": desktop.memory, "cpus": desktop.cpus,
        "pids_limit": desktop.pids_limit, "environment": dict(desktop.environment),
    }
    return hashlib.sha256(json.dumps(made_with, sort_keys=True).encode()).hexdigest()[:16]


class WarmPool:
    """Keeps each desktop's pool full, within capacity, and true to the engine."""

    _log = Logger()

    def __init__(
        self, sessions: DesktopSessions, store: SQLiteStore, clock: IReactorTime,
        probe: Callable[[Backend], Deferred[bool]], *, start_timeout: float, metrics: RelayMetrics | None = None,
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._clock = clock
        self._probe = probe
        self._start_timeout = start_timeout
        self._metrics = metrics or RelayMetrics()
        # Pool containers this process is creating or waiting for.
        self._working: dict[str, Deferred[None]] = {}
        # desktop -> (failures in a row, no new container before this time)
        self._backoff: dict[str, tuple[int, float]] = {}

    @inlineCallbacks
    def maintain(self) -> Generator[Deferred[Any], Any, None]:
        """Retire what should go and start what is missing (the lifecycle's tick calls this after
        the queue had its turn)."""
        if not self._sessions.engine.available:
            return
        yield self._store.forget_ended_claims()
        now = self._clock.seconds()
        desktops = self._sessions.desktops
        kept: dict[str, list[PoolContainer]] = {name: [] for name in desktops}
        for entry in (yield self._store.pooled()):
            desktop = desktops.get(entry.desktop)
            if desktop is None or not desktop.pool_size:
                yield self._retire(entry, "its desktop has no pool any more")
            elif entry.fingerprint != fingerprint(desktop):
                yield self._retire(entry, "its desktop's settings changed")
            elif entry.state == POOL_STARTING and entry.id not in self._working:
                # A relay process before this one stopped while the container started.
                if entry.container_id is None:
                    yield self._retire(entry, "its start was interrupted")
                else:
                    self._work(entry, self._wait_until_ready(entry))
                    kept[entry.desktop].append(entry)
            else:
                kept[entry.desktop].append(entry)
        for name, desktop in desktops.items():
            if desktop.pool_size:
                yield self._keep_full(desktop, kept[name], now)
        self._metrics.pool_counted(Counter((e.desktop, e.state) for e in (yield self._store.pooled())))

    @inlineCallbacks
    def _keep_full(
        self, desktop: DesktopType, entries: list[PoolContainer], now: float
    ) -> Generator[Deferred[Any], Any, None]:
        fresh = [e for e in entries if now - e.created < desktop.pool_max_age]
        aged = [e for e in entries if now - e.created >= desktop.pool_max_age]
        for entry in fresh[desktop.pool_size:]:  # the pool was made smaller: the newest go
            yield self._retire(entry, "the pool is smaller now")
        fresh = fresh[:desktop.pool_size]
        # An aged container still serves until a fresh one is ready to take its place.
        ready = sum(e.state == POOL_READY for e in fresh)
        surplus = max(0, len(aged) - max(0, desktop.pool_size - ready))
        for entry in aged[:surplus]:
            yield self._retire(entry, f"older than pool_max_age ({desktop.pool_max_age:g} s)")
        aged = aged[surplus:]
        not_before = self._backoff.get(desktop.name, (0, 0.0))[1]
        for _ in range(desktop.pool_size - len(fresh)):
            if now < not_before:
                return
            reserved = yield self._reserve(desktop, now)
            if not reserved and aged:
                # No room for the replacement while the old one holds its place: it gives it up.
                yield self._retire(aged.pop(0), f"older than pool_max_age ({desktop.pool_max_age:g} s)")
                reserved = yield self._reserve(desktop, now)
            if not reserved:
                return

    @inlineCallbacks
    def _reserve(self, desktop: DesktopType, now: float) -> Generator[Deferred[Any], Any, bool]:
        entry = PoolContainer(
            id=new_session_id(), desktop=desktop.name, state=POOL_STARTING, fingerprint=fingerprint(desktop),
            vnc_password=secrets.token_urlsafe(24), created=now, memory=desktop.memory_bytes,
        )
        reserved = yield self._store.reserve_pooled(entry, self._sessions.limits)
        if reserved:
            self._work(entry, self._fill(entry, desktop))
        return reserved

    def _work(self, entry: PoolContainer, d: Deferred[None]) -> None:
        self._working[entry.id] = d

        def bug(failure: Failure) -> Deferred[None] | None:
            if failure.check(CancelledError):
                return None
            self._log.failure("filling the pool of {desktop} failed", failure, desktop=entry.desktop)
            return self._retire(entry, "an error on the server")

        def done(_: object) -> None:
            self._working.pop(entry.id, None)

        d.addErrback(bug)
        d.addBoth(done)

    @inlineCallbacks
    def _fill(self, entry: PoolContainer, desktop: DesktopType) -> Generator[Deferred[Any], Any, None]:
        spec = ContainerSpec(entry.id, "", self._sessions.instance, desktop, entry.vnc_password, pooled=True)
        try:
            info = yield self._sessions.provisioner.start(spec)
        except (ContainerEngineUnavailable, ContainerStartFailed) as e:
            # A timed-out create the engine still carries out is the provisioner's to remove.
            yield self._retire(entry, f"it could not be started: {e}")
            self._failed(desktop.name)
            return
        started = yield self._store.pool_started(entry.id, info.container_id, info.host_port)
        if not started:
            yield self._sessions.remove_quietly(info.container_id)
            return
        self._log.info("pool container {container} of {desktop} started", container=info.container_id[:12],
                       desktop=desktop.name, pool_id=entry.id)
        yield self._wait_until_ready(attr.evolve(entry, container_id=info.container_id, host_port=info.host_port))

    @inlineCallbacks
    def _wait_until_ready(self, entry: PoolContainer) -> Generator[Deferred[Any], Any, None]:
        deadline = self._clock.seconds() + self._start_timeout
        backend = Backend("127.0.0.1", entry.host_port, entry.vnc_password) if entry.host_port else None
        probes = 0
        while True:
            current = yield self._store.pool_entry(entry.id)
            if current is None or current.state != POOL_STARTING:
                return  # retired meanwhile (its container died, say)
            if backend is not None and (yield self._probe(backend)):
                now = self._clock.seconds()
                if (yield self._store.pool_ready(entry.id, now)):
                    self._backoff.pop(entry.desktop, None)
                    self._log.info("pool container {container} of {desktop} is ready after {elapsed:.1f}s",
                                   container=(entry.container_id or "")[:12], desktop=entry.desktop,
                                   elapsed=now - entry.created)
                    # Someone may be waiting in the queue for exactly this desktop.
                    yield self._sessions.drain()
                return
            if self._clock.seconds() >= deadline:
                yield self._retire(entry, f"it did not become ready within {self._start_timeout:g} s")
                self._failed(entry.desktop)
                return
            interval = PROBE_INTERVALS[probes] if probes < len(PROBE_INTERVALS) else PROBE_INTERVAL
            probes += 1
            yield deferLater(self._clock, interval, lambda: None)

    def _failed(self, desktop: str) -> None:
        failures = self._backoff.get(desktop, (0, 0.0))[0] + 1
        wait = min(MAX_RETRY, FIRST_RETRY * 2 ** (failures - 1))
        self._backoff[desktop] = (failures, self._clock.seconds() + wait)
        self._log.warn("pool of {desktop}: next container in {wait:g} s ({failures} failure(s) in a row)",
                       desktop=desktop, wait=wait, failures=failures)

    @inlineCallbacks
    def _retire(self, entry: PoolContainer, why: str) -> Generator[Deferred[Any], Any, None]:
        """Take a container out of the pool and remove it, unless someone claimed it meanwhile."""
        retired = yield self._store.retire_pooled(entry.id)
        if retired is None:
            return
        self._log.info("pool container {container} of {desktop} removed ({end_reason}): {why}",
                       container=(retired.container_id or "none")[:12], desktop=retired.desktop,
                       end_reason=POOL, why=why, pool_id=retired.id)
        yield self._store.audit(self._clock.seconds(), "relay", "pool-remove", retired.id,
                                f"{retired.desktop} {POOL}: {why}")
        if retired.container_id:
            yield self._sessions.remove_quietly(retired.container_id)

    # -- told by the event stream and reconcile --------------------------------------------

    @inlineCallbacks
    def lost(self, pool_id: str, container_id: str) -> Generator[Deferred[Any], Any, None]:
        """An unclaimed pool container died (the event stream saw it)."""
        entry = yield self._store.pool_entry(pool_id)
        if entry is None or entry.session_id is not None or entry.container_id not in (None, container_id):
            return
        yield self._retire(entry, "its container stopped")
        self._failed(entry.desktop)

    @inlineCallbacks
    def reconcile(self, containers: list[ContainerInfo]) -> Generator[Deferred[Any], Any, None]:
        """Bring the pool's rows in line with the engine: `containers` are the pooled ones that
        no active session claimed. A container the pool does not know (its row lost with the
        store, or claimed by a session that ended) is removed, never handed out."""
        entries = {e.id: e for e in (yield self._store.pooled())}
        found = set()
        for info in containers:
            entry = entries.get(info.session_id)
            if entry is None or entry.container_id not in (None, info.container_id):
                self._log.info("removing pool container {container}: not in the pool",
                               container=info.container_id[:12], pool_id=info.session_id)
                yield self._sessions.remove_quietly(info.container_id)
            elif not info.running:
                yield self._retire(entry, f"its container is {info.status}")
            else:
                found.add(entry.id)
                if entry.container_id is None and entry.id not in self._working:
                    # The engine made it after the relay that asked had stopped waiting.
                    yield self._store.pool_started(entry.id, info.container_id, info.host_port)
        for entry in entries.values():
            if entry.id not in found and entry.id not in self._working and entry.container_id is not None:
                yield self._retire(entry, "its container is gone")

    def working(self) -> list[Deferred[None]]:
        """Pool containers being created or waited for (for orderly shutdown and tests)."""
        return list(self._working.values())
