"""An image pull as the reactor sees it: a push producer whose worker thread streams the engine's
progress, pauses while the reactor side is paused, and stops when given up."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure
from zope.interface import implementer

from .interface import IImagePull, PullProgress


@implementer(IImagePull)
class DockerImagePull:
    """One pull running in a worker thread; the reactor side pauses, resumes or stops it."""

    # How often a paused worker looks whether the pull was given up meanwhile.
    _PAUSED_CHECK = 0.5

    def __init__(self, on_progress: PullProgress) -> None:
        self._on_progress = on_progress
        self._wanted = threading.Event()
        self._wanted.set()
        self._stopped = False
        self.done: Deferred[None] = Deferred(lambda _: self.stopProducing())

    # -- reactor thread ---------------------------------------------------------------

    def pauseProducing(self) -> None:
        self._wanted.clear()

    def resumeProducing(self) -> None:
        self._wanted.set()

    def stopProducing(self) -> None:
        """Give up: the worker stops reading at its next message and closes the stream."""
        self._stopped = True
        self._wanted.set()
        if not self.done.called:
            self.done.errback(CancelledError("the image pull was given up"))

    def deliver(self, message: Mapping[str, Any]) -> None:
        if not self.done.called:
            self._on_progress(message)

    def finished(self, result: object) -> None:
        if self.done.called:
            return  # given up: whatever the worker ended with is nobody's business now
        if isinstance(result, Failure):
            self.done.errback(result)
        else:
            self.done.callback(None)

    # -- worker thread ----------------------------------------------------------------

    def wait_until_wanted(self) -> bool:
        """Block while paused; False once the pull was given up."""
        while not self._wanted.wait(self._PAUSED_CHECK):
            if self._stopped:
                return False
        return not self._stopped
