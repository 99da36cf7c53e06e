"""Long-poll support: pages wait for a session to change instead of polling on a timer."""

from __future__ import annotations

from collections.abc import Iterable

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime


class SessionWatch:
    """Deferreds waiting for a change of a session (state, queue position, warning)."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._waiting: dict[str, set[Deferred[None]]] = {}

    def wait(self, session_id: str, timeout: float) -> Deferred[None]:
        """Fires at the next change of the session, or after `timeout` seconds, whichever first.
        Cancelling it (the browser left) forgets it."""
        waiters = self._waiting.setdefault(session_id, set())

        def forget(d: Deferred[None]) -> None:
            waiters.discard(d)
            if not waiters:
                self._waiting.pop(session_id, None)

        d: Deferred[None] = Deferred(forget)
        waiters.add(d)
        def expire() -> None:
            if not d.called:
                forget(d)
                d.callback(None)

        timer = self._clock.callLater(timeout, expire)

        def done(result: object) -> object:
            if timer.active():
                timer.cancel()
            if isinstance(getattr(result, "value", None), CancelledError):
                return None
            return result

        d.addBoth(done)
        return d

    def changed(self, session_ids: Iterable[str]) -> None:
        """Wake everyone waiting on these sessions."""
        for session_id in session_ids:
            for d in self._waiting.pop(session_id, ()):
                if not d.called:
                    d.callback(None)

    def session_ids(self) -> list[str]:
        """The sessions someone is waiting on."""
        return list(self._waiting)
