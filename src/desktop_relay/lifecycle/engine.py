"""What the relay knows of the container engine right now: reachable or not, and since when."""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger


class EngineState:
    """Reachability of the engine, as the event stream and failed calls tell it.

    While the engine is away, starts wait in the queue instead of failing, and sessions whose
    container cannot be confirmed are shown as interrupted rather than ready. `lost_at` lets
    reconcile tell containers that died with the engine (engine-lost) from those that exited.
    """

    _log = Logger()

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self.available = True
        self.lost_at: float | None = None
        self.problem: str | None = None

    def lost(self, problem: str) -> None:
        """The engine stopped answering."""
        if self.available:
            self.available = False
            self.lost_at = self._clock.seconds()
        self.problem = problem

    def back(self) -> None:
        """The engine answers again (its event stream is open)."""
        self.available = True
        self.problem = None

    def settled(self) -> None:
        """Reconcile has judged every container against the outage: forget when it began."""
        if self.available:
            self.lost_at = None
