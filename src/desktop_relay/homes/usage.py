"""Measuring the homes: every [homes] usage_interval, in the background, the engine sizes the
instance's home volumes and the store keeps the numbers. Pages and APIs read the store, so no
request ever waits for a volume to be walked."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..store import SQLiteStore
from .interface import IHomeVolumes


class HomeUsage:
    """One measurement of all homes of an instance, run by the lifecycle's background service."""

    _log = Logger()

    def __init__(self, volumes: IHomeVolumes, store: SQLiteStore, clock: IReactorTime, instance: str) -> None:
        self._volumes = volumes
        self._store = store
        self._clock = clock
        self._instance = instance
        self._running = False

    @inlineCallbacks
    def measure(self) -> Generator[Deferred[Any], Any, None]:
        """Size every home volume and record it; skipped while the previous one still runs (a
        large engine may take longer than the interval)."""
        if self._running:
            return
        self._running = True
        try:
            began = self._clock.seconds()
            listed = yield self._volumes.list(self._instance)
            usage = yield self._volumes.usage(self._instance)
            now = self._clock.seconds()
            adopted, forgotten = yield self._store.record_home_usage(listed, usage, began, now)
        finally:
            self._running = False
        self._log.info(
            "home usage: {count} home(s), {total} MiB in all, measured in {elapsed:.1f}s "
            "({adopted} adopted, {forgotten} gone)",
            count=len(listed), total=sum(usage.values()) // 2**20, elapsed=now - began,
            adopted=adopted, forgotten=forgotten,
        )
