"""The values the store keeps: desktop sessions with their states, signed-in browsers, admin
tokens, the users seen."""

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
    # A failed start's cause as a stable code (lifecycle/reasons.py FAILURES), else None.
    failure: str | None = None

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


@attr.s(frozen=True, auto_attribs=True)
class AdminToken:
    """A bearer token for the admin API, known by its name; only its hash is kept."""

    name: str
    token_hash: str = attr.ib(repr=False)
    scope: str  # "read" or "write"
    created: float
    revoked: float | None = None
    last_used: float | None = None


@attr.s(frozen=True, auto_attribs=True)
class SeenUser:
    """Someone who signed in, as of their last sign-in."""

    user_id: str
    display_name: str
    groups: frozenset[str]
    role: str
    first_seen: float
    last_sign_in: float


@attr.s(frozen=True, auto_attribs=True)
class SessionFilter:
    """Which desktop sessions an admin asks for; None means any."""

    owner: str | None = None
    desktop: str | None = None
    state: str | None = None
    created_before: float | None = None
    created_after: float | None = None
    # Sessions whose last input (or, without input, their readiness) is older than this.
    idle_since: float | None = None


class StoreError(Exception):
    """The database could not be opened or upgraded."""
