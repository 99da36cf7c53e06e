"""Who is at the keyboard: each session's last user input and last connected browser, in memory,
written to the store at most every few seconds so a relay restart keeps everyone's idle clock."""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime


class ActivityTracker:
    """Last input and last connection per session; `touch` is called per input message, so it
    only writes a dict entry."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._input: dict[str, float] = {}
        self._connected: dict[str, float] = {}
        self._dirty: set[str] = set()

    def touch(self, session_id: str) -> None:
        """The user of this session just typed, pointed or pasted."""
        self._input[session_id] = self._clock.seconds()
        self._dirty.add(session_id)

    def connected(self, session_id: str) -> None:
        """A browser is connected to this session right now."""
        self._connected[session_id] = self._clock.seconds()
        self._dirty.add(session_id)

    def last_input(self, session_id: str) -> float | None:
        return self._input.get(session_id)

    def last_connected(self, session_id: str) -> float | None:
        return self._connected.get(session_id)

    def take_dirty(self) -> dict[str, tuple[float | None, float | None]]:
        """What changed since the last call, as (last input, last connected) per session."""
        dirty, self._dirty = self._dirty, set()
        return {sid: (self._input.get(sid), self._connected.get(sid)) for sid in dirty}

    def forget(self, session_id: str) -> None:
        """The session ended."""
        self._input.pop(session_id, None)
        self._connected.pop(session_id, None)
        self._dirty.discard(session_id)
