"""Hand-outs and hand-ins while the relay runs: the volumes made before a desktop mounts them,
each class's due time kept in the store and enforced on the engine (at the due time by a timer,
at start-up for dues that passed meanwhile), and the places the files API serves them from."""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any

from twisted.internet.defer import Deferred, DeferredLock, inlineCallbacks
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ..auth.classes import ClassScope
from ..config import DesktopType
from ..engine.interface import Mount
from ..files.places import FilesPlace
from ..files.transfer import DownloadStream
from ..store import DueTime, SQLiteStore
from . import ClassVolume, handin_volume, handout_volume
from .mounts import classwork_mounts
from .volumes import DockerClassworkVolumes

# Where the files containers mount a hand-out and a hand-in.
HANDOUT_PATH, HANDIN_PATH = "/handout", "/handin"


class Classwork:
    """The classwork volumes and due times of one relay instance."""

    _log = Logger()

    def __init__(
        self, scope: ClassScope, volumes: DockerClassworkVolumes, store: SQLiteStore, clock: IReactorTime,
        instance: str, image: str, uid: int = 1000,
    ) -> None:
        """`image` and `uid`: the files containers' image and the desktops' user (home_uid)."""
        self.scope = scope
        self._volumes = volumes
        self._store = store
        self._clock = clock
        self.instance = instance
        self._image = image
        self._uid = uid
        self._due: dict[str, DueTime] = {}
        self._timers: dict[str, IDelayedCall] = {}
        # Closing and opening one class must not interleave with another change of it.
        self._lock = DeferredLock()

    @property
    def reactor(self) -> Any:
        """The clock, which is the reactor when not testing (downloads call from threads)."""
        return self._clock

    def now(self) -> float:
        """The time now, by the clock due times are kept with."""
        return self._clock.seconds()

    def stream_zip(self, volumes: Mapping[str, str], stream: DownloadStream) -> Deferred[int]:
        """Feed `stream` a zip of these hand-in volumes, by the folder each gets."""
        return self._volumes.stream_zip(volumes, stream)

    # -- due times ------------------------------------------------------------------------

    @inlineCallbacks
    def start(self) -> Generator[Deferred[Any], Any, None]:
        """Load the due times; close the hand-ins whose due time passed while the relay was away."""
        self._due = yield self._store.due_times()
        for class_group in list(self._due):
            self._schedule(class_group)
        yield self._settle_all()

    def stop(self) -> None:
        """Cancel the timers (at the relay's stop)."""
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()

    def due(self, class_group: str) -> DueTime | None:
        """A class's due time, if it has one."""
        return self._due.get(class_group)

    def closed(self, class_group: str) -> bool:
        """Whether a class's hand-ins are past their due time (closed, or closing now)."""
        due = self._due.get(class_group)
        return due is not None and due.due <= self._clock.seconds()

    @inlineCallbacks
    def set_due(self, class_group: str, due: float | None, actor: str,
                address: str = "") -> Generator[Deferred[Any], Any, bool]:
        """Set, move or (None) clear a class's due time, closing or opening its hand-ins to match;
        False when there was none to clear."""
        now = self._clock.seconds()
        if due is None:
            cleared = yield self._store.clear_due(class_group, actor, now, address)
            if not cleared:
                return False
        else:
            yield self._store.set_due(class_group, due, actor, now, address)
        self._due = yield self._store.due_times()
        self._schedule(class_group)
        self._log.info("{actor} {what} the hand-in due time of class {class_group}",
                       actor=actor, what="cleared" if due is None else f"set ({due:.0f})",
                       class_group=class_group)
        yield self._settle(class_group)
        return True

    def _schedule(self, class_group: str) -> None:
        timer = self._timers.pop(class_group, None)
        if timer is not None and timer.active():
            timer.cancel()
        due = self._due.get(class_group)
        if due is not None and due.due > self._clock.seconds():
            self._timers[class_group] = self._clock.callLater(
                due.due - self._clock.seconds(), self._at_due, class_group)

    def _at_due(self, class_group: str) -> None:
        self._timers.pop(class_group, None)
        self._settle(class_group).addErrback(
            lambda f: self._log.failure("closing the hand-ins of class {class_group} failed", f,
                                        class_group=class_group))

    @inlineCallbacks
    def _settle_all(self) -> Generator[Deferred[Any], Any, None]:
        for class_group in list(self._due):
            try:
                yield self._settle(class_group)
            except Exception as e:  # noqa: BLE001 - one class's engine trouble must not stop the start
                self._log.warn("could not close the hand-ins of class {class_group}: {reason}",
                               class_group=class_group, reason=str(e))

    @inlineCallbacks
    def _settle(self, class_group: str) -> Generator[Deferred[Any], Any, None]:
        """Make the engine's hand-ins of a class match its due time."""
        yield self._lock.acquire()
        try:
            due = self._due.get(class_group)
            should_close = self.closed(class_group)
            if due is not None and due.closed == should_close:
                return
            if due is None and not should_close:
                # Cleared: open whatever an earlier due time closed (an open hand-in stays open).
                yield self._volumes.set_closed(class_group, False, self._uid)
                return
            yield self._volumes.set_closed(class_group, should_close, self._uid)
            assert due is not None
            yield self._store.mark_closed(class_group, due.due, should_close)
            self._due[class_group] = DueTime(due.class_group, due.due, due.set_by, due.set_at, should_close)
        finally:
            self._lock.release()

    # -- volumes ----------------------------------------------------------------------------

    @inlineCallbacks
    def mounts_for(self, desktop: DesktopType, user_id: str, role: str,
                   groups: frozenset[str]) -> Generator[Deferred[Any], Any, tuple[Mount, ...]]:
        """The classwork mounts of a user's new container, their volumes made first."""
        closed = {c for c in self.scope.classes_in(groups) if self.closed(c)}
        mounts = classwork_mounts(self.scope, self.instance, desktop, user_id, role, groups, closed)
        for mount in mounts:
            yield self._volumes.ensure(mount.volume, closed=mount.volume.kind == "handin" and mount.read_only)
        return tuple(m.volume.mount_at(m.target, m.read_only) for m in mounts)

    def handout(self, class_group: str) -> ClassVolume:
        """A class's hand-out volume, as the files containers mount it (read-write: the files
        API itself refuses pupils' writes, as one files container serves teachers and pupils)."""
        return handout_volume(self.instance, class_group, self._uid, HANDOUT_PATH)

    def handin(self, class_group: str, pupil: str) -> ClassVolume:
        """A pupil's hand-in volume for a class, as the files containers mount it."""
        return handin_volume(self.instance, class_group, pupil, self._uid, HANDIN_PATH)

    def files_place(self, volume: ClassVolume, title: str) -> FilesPlace:
        """A classwork volume as a files place."""
        return FilesPlace(home=volume, title=title, image=self._image, quota=None, shares=())

    def prepare(self, volume: ClassVolume) -> Deferred[bool]:
        """Make a classwork volume before a files container mounts it (the files containers
        would make it owned by root)."""
        return self._volumes.ensure(volume, closed=volume.kind == "handin" and self.closed(volume.class_group))

    def handins(self, class_group: str) -> Deferred[dict[str, str]]:
        """The hand-in volumes of a class on the engine, by pupil."""
        return self._volumes.handins(class_group)
