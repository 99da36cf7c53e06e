"""The bridge's vocabulary, shared by its two sides and by its users: close codes, where an
upgrade goes (BridgeTarget), how a bridge ended (BridgeClosed), and the callables the relay
injects (Resolver, InputListener, BridgeListener)."""

from __future__ import annotations

import typing
from collections.abc import Callable

import attr
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet import defer

from desktop_relay.backend import Backend

#: The user's session was stopped (idle, lifetime, admin): the desktop is gone for good.
CLOSE_SESSION_STOPPED = 4000
#: The user signed out; the web client should not try to reconnect.
CLOSE_SIGNED_OUT = 4001
#: The container's connection ended without a close code of its own (told to the browser).
CLOSE_CONTAINER_GONE = 1011
#: The browser (or the relay, at shutdown) is leaving (told to the container).
CLOSE_GOING_AWAY = 1001
#: A look's browser sent what the view-only filter cannot follow, or the look was ended.
CLOSE_POLICY = 1008

_CONTAINER_GONE_REASON = "desktop container went away"
# A container that vanished (killed, crashed, out of memory) drops its TCP connection a moment
# before the lifecycle learns from the engine why; the browser waits this long for that reason
# (4000 and the words) before it gets the bare 1011, after which the web client would retry.
# Longer than the lifecycle's wait for a container stopped from outside (SHUTDOWN_GRACE, 3 s).
CONTAINER_GONE_GRACE = 4.0
_BROWSER_GONE_REASON = "browser went away"

@attr.s(frozen=True, auto_attribs=True)
class BridgeTarget:
    """Where an authorised upgrade goes: the session's container, who connects (`user_id`), and
    the browser's address (behind a trusted proxy, the one it forwarded). For a teacher's look at
    a pupil's desktop, `looking_at` is the pupil (the session's owner) and `viewer_name` the
    teacher's name: its browser's input is removed unless it is given control (`control`)."""

    backend: Backend
    session_id: str
    user_id: str
    address: str = ""
    looking_at: str | None = None
    viewer_name: str = ""
    control: bool = False


@attr.s(frozen=True, auto_attribs=True)
class BridgeClosed:
    """How a bridge ended: each side's close code (None: it sent none) and the bytes relayed."""

    browser_code: int | None
    container_code: int | None
    bytes_to_browser: int
    bytes_to_container: int

    def audit_detail(self) -> str:
        """The audit trail's detail for a disconnect: key=value pairs, "-" for no code."""
        return " ".join(
            f"{name}={'-' if value is None else value}" for name, value in attr.asdict(self).items()
        )


class BridgeListener(typing.Protocol):
    """Told when a bridge opens and when it has closed, on the reactor (so it must not wait)."""

    def bridge_opened(self, target: BridgeTarget) -> None: ...

    def bridge_closed(self, target: BridgeTarget, closed: BridgeClosed) -> None: ...


class Revocations(typing.Protocol):
    """Told on the reactor when access ends: a session's bridges are closed because it stopped,
    or a user's because they signed out. Whatever remembers granted access forgets it here."""

    def session_revoked(self, session_id: str) -> None: ...

    def user_revoked(self, user_id: str) -> None: ...


class _NoListener:
    def bridge_opened(self, target: BridgeTarget) -> None:
        pass

    def bridge_closed(self, target: BridgeTarget, closed: BridgeClosed) -> None:
        pass


#: Checks an upgrade (cookie, session, ownership, Origin) and names its container, or fails
#: with ``ConnectionDeny(status, reason)``.
Resolver = Callable[[ConnectionRequest], "defer.Deferred[BridgeTarget]"]

#: Told the session id of a bridge whose browser just sent a person's input; called on the
#: reactor for such messages, so it must be cheap (store a time, nothing more).
InputListener = Callable[[str], None]


def _ignore_input(session_id: str) -> None:
    pass


class UpgradeRefused(ConnectionDeny):
    """A resolver's refusal, with what the bridge's one log line about it says: the session
    and user (when known) and why, for admins; the browser gets only ``reason``."""

    def __init__(self, code: int, reason: str, *, session: str | None, user: str | None, why: str) -> None:
        super().__init__(code, reason)
        self.session = session
        self.user = user
        self.why = why


class ContainerRefused(Exception):
    """The container's WebSocket could not be opened; ``status`` is its HTTP answer, if any."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
