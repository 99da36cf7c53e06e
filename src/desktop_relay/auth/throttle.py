"""Rate limiting of failed sign-ins, per user name and client address, on an injected clock."""

from __future__ import annotations

from collections import defaultdict, deque

from twisted.internet.interfaces import IReactorTime


class LoginThrottle:
    """Counts failed logins in a sliding window.

    A (user, address) pair is blocked after `attempts` failures; one address after four times
    that many, whatever names it tries. Blocking per pair, not per user alone, means nobody can
    lock a pupil out of their account from another machine.
    """

    def __init__(self, clock: IReactorTime, attempts: int, window: float) -> None:
        self._clock = clock
        self._attempts = attempts
        self._window = window
        self._failures: dict[object, deque[float]] = defaultdict(deque)

    def _recent(self, key: object) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        horizon = self._clock.seconds() - self._window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, username: str, address: str) -> float:
        """Seconds until this user may try again from this address; 0 when allowed now."""
        now = self._clock.seconds()
        waits = [0.0]
        for key, limit in (((username, address), self._attempts), (address, self._attempts * 4)):
            times = self._recent(key)
            if len(times) >= limit:
                waits.append(times[-limit] + self._window - now)
        return max(waits)

    def failed(self, username: str, address: str) -> None:
        """Record one failed attempt."""
        now = self._clock.seconds()
        self._failures[(username, address)].append(now)
        self._failures[address].append(now)

    def succeeded(self, username: str, address: str) -> None:
        """A good password clears that pair's record (not the address's)."""
        self._failures.pop((username, address), None)
