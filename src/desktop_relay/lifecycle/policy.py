"""When a ready desktop is due to stop, and when its user is warned: idle, lifetime, disconnect.

A pure function of the session, its desktop's policy and the clocks, so the reaper, the API
view and the tests all see the same deadlines.
"""

from __future__ import annotations

import attr

from ..config import DesktopType
from ..store import DesktopSession
from .reasons import DISCONNECTED, IDLE, LIFETIME


@attr.s(frozen=True, auto_attribs=True)
class Timing:
    """A ready session's deadlines (epoch seconds; None: that policy is off)."""

    idle_deadline: float | None
    lifetime_deadline: float | None
    disconnect_deadline: float | None
    # The policy whose deadline has passed, if any: the session is to be stopped for it.
    due: str | None
    # (policy, deadline) when a stop is less than idle_warning away and the user should be told.
    warning: tuple[str, float] | None


def timing(
    session: DesktopSession,
    desktop: DesktopType | None,
    *,
    now: float,
    last_input: float | None,
    last_connected: float | None,
    connected: bool,
) -> Timing:
    """The deadlines of a ready session. Idle counts from the last input (or from when the desktop
    became ready, if nobody has typed yet); lifetime from the start; disconnect from the moment
    the last browser went (or ready, if none ever came)."""
    if desktop is None:
        # Its [desktop:NAME] was removed from relay.ini: it runs on until it is stopped otherwise.
        return Timing(None, None, None, None, None)
    since_ready = session.ready_at or session.created
    idle_deadline = lifetime_deadline = disconnect_deadline = None
    if desktop.idle_timeout is not None:
        idle_deadline = max(filter(None, (last_input, session.last_input, since_ready))) + desktop.idle_timeout
    if desktop.max_lifetime is not None:
        lifetime_deadline = session.created + desktop.max_lifetime
    if desktop.disconnect_grace is not None and not connected:
        gone = max(filter(None, (last_connected, session.last_connected, since_ready)))
        disconnect_deadline = gone + desktop.disconnect_grace
    due = None
    for policy, deadline in ((LIFETIME, lifetime_deadline), (IDLE, idle_deadline),
                             (DISCONNECTED, disconnect_deadline)):
        if deadline is not None and now >= deadline:
            due = policy
            break
    warning = None
    upcoming = [(deadline, policy) for policy, deadline in ((IDLE, idle_deadline), (LIFETIME, lifetime_deadline))
                if deadline is not None and deadline - now <= desktop.idle_warning]
    if upcoming and due is None:
        deadline, policy = min(upcoming)
        warning = (policy, deadline)
    return Timing(idle_deadline, lifetime_deadline, disconnect_deadline, due, warning)
