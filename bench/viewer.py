"""The benchmarks' browser-like WebSocket client: a viewer that opens, waits for the desktop's
banner, times the echo of what it sends, and hands every other message to its subclass.

Made by a function, not at import: the benchmarks import this module before their processes
have chosen and installed a reactor."""

from __future__ import annotations

import time
from typing import Any

# An incremental FramebufferUpdateRequest for 1280x720 (RFB, client to server).
FBUR = bytes.fromhex("030100000000050002d0")
# What a VNC web client sends first: version, security type None, ClientInit.
RFB_HANDSHAKE = (b"RFB 003.008\n", b"\x01", b"\x01")


def echo_payload(n: int) -> bytes:
    """16 bytes of RFB: an update request and a pointer event at a new position (input)."""
    return FBUR + b"\x05\x00" + (n % 1280).to_bytes(2, "big") + (n % 720).to_bytes(2, "big")


def viewer_class() -> type:
    """The Viewer protocol class: subclasses override on_stream(payload)."""
    from autobahn.twisted.websocket import WebSocketClientProtocol
    from twisted.internet import defer

    class Viewer(WebSocketClientProtocol):
        def __init__(self) -> None:
            super().__init__()
            self.opened: defer.Deferred = defer.Deferred()
            self.closed: defer.Deferred = defer.Deferred()
            self.banner: defer.Deferred = defer.Deferred()
            self.reply: defer.Deferred | None = None
            # Set by the benchmark before it closes: any other close is unexpected.
            self.closing = False
            self.unexpected_close = False

        def on_stream(self, payload: bytes) -> None:
            """A message that is neither the banner nor an awaited echo."""

        def onOpen(self) -> None:
            self.opened.callback(self)

        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            if not self.banner.called:
                self.banner.callback(None)
            elif self.reply is not None:
                reply, self.reply = self.reply, None
                reply.callback(time.perf_counter())
            else:
                self.on_stream(payload)

        def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
            if not self.opened.called:
                self.opened.errback(RuntimeError(f"refused: {code} {reason}"))
            elif not self.closing:
                self.unexpected_close = True
            if self.reply is not None:
                self.reply.errback(RuntimeError("closed"))
            self.closed.callback(code)

    return Viewer


async def open_viewer(proto: Any, factory: Any, endpoint: Any) -> Any:
    """Connect `proto` through `endpoint` and wait until it opened and read the banner."""
    from twisted.internet.endpoints import connectProtocol

    proto.factory = factory
    await connectProtocol(endpoint, proto)
    await proto.opened
    await proto.banner
    return proto


async def round_trip(proto: Any, payload: bytes) -> float:
    """Send `payload` on a viewer; the time its echo arrived."""
    from twisted.internet import defer

    proto.reply = defer.Deferred()
    proto.sendMessage(payload, isBinary=True)
    return await proto.reply


async def rfb_handshake(proto: Any) -> Any:
    """Send an RFB client's handshake on a viewer, as a web client would."""
    for message in RFB_HANDSHAKE:
        await round_trip(proto, message)
    return proto
