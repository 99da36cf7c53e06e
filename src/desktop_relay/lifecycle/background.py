"""The lifecycle's background work, in one service: the event follower, the tick (lessons'
pre-starts, the reaper, the queue, then the warm pool), and the periodic reconcile. With several
relays, one elected process runs it."""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ..engine.interface import ContainerEngineUnavailable, IEventFollower
from ..metrics import RelayMetrics
from ..store import SQLiteStore
from .events import EventHandler
from .pool import WarmPool
from .prestart import LessonPrestarts
from .reconcile import reconcile
from .sessions import DesktopSessions

# Share of the engine's memory that desktops may be given with memory_budget = auto.
AUTO_MEMORY_SHARE = 0.8
# How often audit lines past [audit] keep are deleted (and once at start).
AUDIT_PURGE_INTERVAL = 86400.0


class LifecycleService(Service):
    """Runs what keeps sessions true without anyone asking: engine events, deadlines, the queue."""

    _log = Logger()

    def __init__(
        self,
        sessions: DesktopSessions,
        store: SQLiteStore,
        clock: IReactorTime,
        *,
        check_interval: float,
        reconcile_interval: float,
        activity_write_interval: float,
        memory_budget_auto: bool,
        audit_keep: float | None = None,
        metrics: RelayMetrics | None = None,
        measurements: Sequence[tuple[Callable[[], Deferred[None]], float]] = (),
        pool: WarmPool | None = None,
        prestarts: LessonPrestarts | None = None,
    ) -> None:
        """`measurements`: (work, interval) run at start and then every interval, such as the
        homes' usage."""
        self.sessions = sessions
        self.pool = pool
        self.prestarts = prestarts
        self._store = store
        self._clock = clock
        self._check_interval = check_interval
        self._reconcile_interval = reconcile_interval
        self._memory_budget_auto = memory_budget_auto
        self._metrics = metrics or RelayMetrics()
        self.events = EventHandler(sessions, store, clock, pool=pool)
        self._follower: IEventFollower | None = None
        self._loops = [
            self._loop(self._tick, check_interval),
            self._loop(self.reconcile, reconcile_interval),
            self._loop(sessions.flush_activity, activity_write_interval),
        ]
        self._audit_keep = audit_keep
        # Started at once, unlike the loops above: the relay purges when it starts, then daily.
        self._audit_purge = self._loop(self.purge_audit, AUDIT_PURGE_INTERVAL)[0]
        self._measurements = [self._loop(work, interval) for work, interval in measurements]
        self._reconciling: Deferred[None] | None = None
        self._budget_known = not memory_budget_auto

    def _loop(self, work: object, interval: float) -> tuple[LoopingCall, float]:
        loop = LoopingCall(self._guarded, work)
        loop.clock = self._clock
        return (loop, interval)

    @inlineCallbacks
    def _guarded(self, work):  # type: ignore[no-untyped-def]
        try:
            yield work()
        except ContainerEngineUnavailable as e:
            self.sessions.engine.lost(str(e))
        except Exception:  # noqa: BLE001 - the loop must go on; the failure is logged
            self._log.failure("background lifecycle work failed")

    @inlineCallbacks
    def prepare(self) -> Generator[Deferred[Any], Any, None]:
        """Before the relay listens: learn the memory budget, and reconcile once. An engine that
        cannot be reached delays neither: both happen when its event stream opens."""
        yield self._guarded(self._learn_budget)
        if self.sessions.engine.available:
            yield self._guarded(self.reconcile)

    def startService(self) -> None:
        super().startService()
        self._follower = self.sessions.provisioner.follow_events(
            self.sessions.instance, self.events, self._engine_back, self._engine_lost
        )
        for loop, interval in self._loops:
            loop.start(interval, now=False)
        if self._audit_keep is not None:
            self._audit_purge.start(AUDIT_PURGE_INTERVAL, now=True)
        for loop, interval in self._measurements:
            loop.start(interval, now=True)

    def _engine_back(self) -> None:
        self.sessions.engine.back()
        d = self._guarded(self._learn_budget)
        d.addCallback(lambda _: self._guarded(self.reconcile))

    def _engine_lost(self, reason: str) -> None:
        self.sessions.engine.lost(reason)
        # Pages showing a ready desktop learn that it is interrupted.
        self.sessions.watch.changed(self.sessions.watch.session_ids())

    @inlineCallbacks
    def _learn_budget(self) -> Generator[Deferred[Any], Any, None]:
        if self._budget_known:
            return
        total = yield self.sessions.provisioner.memory_total()
        budget = int(total * AUTO_MEMORY_SHARE)
        self.sessions.set_memory_budget(budget)
        self._budget_known = True
        self._log.info("memory budget for desktops: {budget} MiB (80% of the engine's {total} MiB)",
                       budget=budget // 2**20, total=total // 2**20)

    @inlineCallbacks
    def _tick(self) -> Generator[Deferred[Any], Any, None]:
        yield self._learn_budget()
        if self.prestarts is not None:
            yield self.prestarts.tick()
        yield self.sessions.reap()
        yield self.sessions.drain()
        if self.pool is not None:
            # After the queue: the pool refills only with room that nobody waiting can use.
            yield self.pool.maintain()
        # The sessions gauge reads this count: a scrape never waits for the database.
        self._metrics.sessions_counted((yield self._store.count_active()))

    @inlineCallbacks
    def purge_audit(self) -> Generator[Deferred[Any], Any, None]:
        """Delete the audit lines older than [audit] keep, and say how many."""
        if self._audit_keep is None:
            return
        purged = yield self._store.purge_audit(self._clock.seconds() - self._audit_keep)
        self._log.info("audit trail: {count} line(s) older than {days:g} days deleted",
                       count=purged, days=self._audit_keep / 86400)

    def reconcile(self) -> Deferred[None]:
        """Reconcile now, unless a reconcile is already running (then wait for that one)."""
        if self._reconciling is not None:
            waiting: Deferred[None] = Deferred()

            def finished(result: object) -> object:
                waiting.callback(None)
                return result

            self._reconciling.addBoth(finished)
            return waiting
        d: Deferred[None] = reconcile(self.sessions, self._store, self.pool)
        self._reconciling = d

        def done(result: object) -> object:
            self._reconciling = None
            return result

        return d.addBoth(done)

    @inlineCallbacks
    def stopService(self) -> Generator[Deferred[Any], Any, None]:
        for loop in [*(loop for loop, _ in [*self._loops, *self._measurements]), self._audit_purge]:
            if loop.running:
                loop.stop()
        if self._follower is not None:
            yield self._follower.stop()
        yield DeferredList(self.events.pending(), consumeErrors=True)
        if self.pool is not None:
            # A pool container cut off while starting is finished or retired by the next relay.
            for working in self.pool.working():
                working.cancel()
            yield DeferredList(self.pool.working(), consumeErrors=True)
        yield self.sessions.flush_activity()
        super().stopService()
