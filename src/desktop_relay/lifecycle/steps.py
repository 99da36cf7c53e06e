"""Where a desktop's start has got to, as the pages show it: the step and since when.

Derived from what the store already keeps, so a relay restart loses nothing: a queued session
waits since it (re-)entered the queue, a starting one without a container is being created, one
with a container is waited for until its desktop answers, a ready one is ready since `ready_at`.
Every step change is a store update (which stamps `updated`) followed by a watch wake-up, so
long-polls see each step. After a restart, reconcile may rewrite a starting session's port,
which restamps its `waiting` step: the step is right, its start time a little late.
"""

from __future__ import annotations

from ..store import QUEUED, READY, STARTING, DesktopSession

# The steps, in the order a start passes through them; the browser adds its own "connecting".
STEP_QUEUED, STEP_CREATING, STEP_WAITING, STEP_READY = "queued", "creating", "waiting", "ready"
STEPS = (STEP_QUEUED, STEP_CREATING, STEP_WAITING, STEP_READY)


def step_of(session: DesktopSession) -> tuple[str | None, float | None]:
    """(step, since) for a session; (None, None) once it is stopping or has ended."""
    if session.state == QUEUED:
        return STEP_QUEUED, session.updated
    if session.state == STARTING:
        return (STEP_WAITING if session.container_id else STEP_CREATING), session.updated
    if session.state == READY:
        return STEP_READY, session.ready_at if session.ready_at is not None else session.updated
    return None, None
