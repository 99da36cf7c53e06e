"""The WebSocket bridge: one browser's VNC WebSocket joined to its desktop container's.

This package owns the upgrade of ``/desktop/<session-id>/websockify`` once twisted.web has handed
it to Autobahn: asking the injected resolver who may connect where, opening the container's
``wss://…/websockify`` with the relay's own Basic auth, answering the browser's upgrade only once
the container's is done, copying messages both ways under producer/consumer flow control,
telling the injected ``on_input`` when the browser's messages carry a person's input (see
:mod:`desktop_relay.relay.rfb`), and closing each side when the other goes, with codes that say
why.

Behind this face: ``_types`` (the vocabulary), ``_wire`` (Autobahn as both sides use it),
``_container`` (the client to the container and its frame pass-through), ``_browser`` (the
server protocol that owns a bridge) and ``_factory`` (shared options, the registry of bridges).
"""

from ._browser import DesktopBridgeProtocol
from ._factory import DesktopBridgeFactory
from ._types import (
    CLOSE_CONTAINER_GONE,
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_SESSION_STOPPED,
    CLOSE_SIGNED_OUT,
    BridgeClosed,
    BridgeListener,
    BridgeTarget,
    InputListener,
    Resolver,
    Revocations,
    UpgradeRefused,
)

__all__ = [
    "CLOSE_CONTAINER_GONE",
    "CLOSE_GOING_AWAY",
    "CLOSE_POLICY",
    "CLOSE_SESSION_STOPPED",
    "CLOSE_SIGNED_OUT",
    "BridgeClosed",
    "BridgeListener",
    "BridgeTarget",
    "DesktopBridgeFactory",
    "DesktopBridgeProtocol",
    "InputListener",
    "Resolver",
    "Revocations",
    "UpgradeRefused",
]
