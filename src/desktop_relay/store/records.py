"""The values the store keeps: desktop sessions with their states, signed-in browsers."""

from __future__ import annotations

import attr

QUEUED, STARTING, READY, STOPPING, STOPPED, FAILED = (
    "queued", "starting", "ready", "stopping", "stopped", "failed"
)
# States that hold (or are getting or losing) a container, and so count against capacity.
HOLDING_STATES = (STARTING, READY, STOPPING)
# States a session can still end from: the active ones.
ACTIVE_STATES = (QUEUED, *HOLDING_STATES)


@attr.s(frozen=True, auto_attribs=True)
class DesktopSession:
    """One desktop session: a user's container for one desktop type, from start to stop."""

    id: str
    owner: str
    desktop: str
    state: str
    reason: str | None
    container_id: str | None
    host_port: int | None
    vnc_password: str = attr.ib(repr=False)
    created: float
    updated: float
    end_reason: str | None = None
    memory: int = 0
    ready_at: float | None = None
    last_input: float | None = None
    last_connected: float | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


@attr.s(frozen=True, auto_attribs=True)
class WebSession:
    """A signed-in browser: who it is, and when it signed in and was last seen."""

    token_hash: str
    user_id: str
    display_name: str
    groups: frozenset[str]
    created: float
    last_seen: float
    role: str = "pupil"


class StoreError(Exception):
    """The database could not be opened or upgraded."""
