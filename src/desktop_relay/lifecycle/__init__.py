"""The desktop session lifecycle: start (through the queue), ready, the idle, lifetime and
disconnect policies, every kind of stop, the engine's events and reconcile.

One concern per module: sessions (start and stop), policy (deadlines and warnings),
activity (last input), watch (long-poll), engine (reachability), events (the event stream),
reconcile (the store brought back to what Docker says), background (the service that runs the
periodic and event-driven work), reasons (why sessions end).
"""

from ..capacity import DoesNotFit, QueueFull, SessionLimitReached
from .background import LifecycleService
from .sessions import DesktopNotAllowed, DesktopSessions, UnknownDesktop, new_session_id

__all__ = [
    "DesktopNotAllowed",
    "DesktopSessions",
    "DoesNotFit",
    "LifecycleService",
    "QueueFull",
    "SessionLimitReached",
    "UnknownDesktop",
    "new_session_id",
]
