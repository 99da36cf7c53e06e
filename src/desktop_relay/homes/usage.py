"""Measuring the homes: every [homes] usage_interval, in the background, the engine sizes the
instance's home volumes and the store keeps the numbers. Pages and APIs read the store, so no
request ever waits for a volume to be walked."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..engine.interface import ContainerEngineTimedOut
from ..store import SQLiteStore
from .interface import IHomeVolumes


class HomeUsage:
    """One measurement of all homes of an instance, run by the lifecycle's background service
    (its LoopingCall waits for one to finish before it schedules the next)."""

    _log = Logger()

    def __init__(
        self, volumes: IHomeVolumes, store: SQLiteStore, clock: IReactorTime, instance: str,
        on_measured: Callable[[], object] = lambda: None,
    ) -> None:
        """`on_measured` is told after each measurement is stored (the open session pages then
        fetch their views, with the home's new usage)."""
        self._volumes = volumes
        self._store = store
        self._clock = clock
        self._instance = instance
        self._on_measured = on_measured

    @inlineCallbacks
    def measure(self) -> Generator[Deferred[Any], Any, None]:
        """Size every home volume and record it."""
        began = self._clock.seconds()
        listed = yield self._volumes.list(self._instance)
        try:
            usage = yield self._volumes.usage(self._instance)
        except ContainerEngineTimedOut as e:
            # Sizing walks every volume on the engine and may outlast [docker] timeout on a full
            # server: that is a slow measurement, not a lost engine, so the relay carries on.
            self._log.warn("home usage not measured this time: {problem}", problem=str(e))
            return
        now = self._clock.seconds()
        adopted, forgotten = yield self._store.record_home_usage(listed, usage, began, now)
        self._log.info(
            "home usage: {count} home(s), {total} MiB in all, measured in {elapsed:.1f}s "
            "({adopted} adopted, {forgotten} gone)",
            count=len(listed), total=sum(usage.values()) // 2**20, elapsed=now - began,
            adopted=adopted, forgotten=forgotten,
        )
        self._on_measured()
