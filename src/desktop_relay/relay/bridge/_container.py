"""The container side of a bridge: the relay's TLS WebSocket client to one desktop container,
which passes the container's whole binary frames to the browser as they came."""

from __future__ import annotations

from typing import TYPE_CHECKING

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectingRequest, ConnectionResponse
from twisted.internet import defer
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from ._types import ContainerRefused
from ._wire import _SILENT, _forget_close_timer, _forget_handshake, _LeanTransportMixin

if TYPE_CHECKING:
    from ._browser import DesktopBridgeProtocol


# Kasm's web client reads only binary frames in the "binary" subprotocol; the path is fixed by
# KasmVNC (any path upgrades, Kasm's client uses this one).
_CONTAINER_PATH = "/websockify"

# First byte of a whole (FIN) binary frame without extension bits.
_FIN_BINARY = 0x82


class _OneProtocol(Factory):
    """Hands out one prepared protocol (``connectProtocol`` makes a new class per call, which
    costs about 2 KiB per bridge for as long as it lives)."""

    noisy = False

    def __init__(self, proto: Protocol) -> None:
        self._proto = proto

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        return self._proto


class _OfferedProtocols:
    """The shared container client factory, but with this connection's offered subprotocols:
    Autobahn checks the server's choice against ``factory.protocols``."""

    __slots__ = ("_shared", "protocols")

    def __init__(self, shared: WebSocketClientFactory, protocols: list[str]) -> None:
        self._shared = shared
        self.protocols = protocols

    def __getattr__(self, name: str) -> object:
        return getattr(self._shared, name)


# Autobahn's own base classes disagree on the types of peer and _transport_details.
class _ContainerProtocol(_LeanTransportMixin, WebSocketClientProtocol):  # type: ignore[misc]
    """The relay's client connection to one container, owned by a DesktopBridgeProtocol."""

    def __init__(self, bridge: DesktopBridgeProtocol, request: ConnectingRequest) -> None:
        super().__init__()
        self._bridge = bridge
        self._connecting_request = request
        self.opened: defer.Deferred[_ContainerProtocol] = defer.Deferred()
        # The frame being passed through (see dataReceived): its pieces so far, how many
        # bytes of it are still to come, and its payload length.
        self._frame: list[bytes] | None = None
        self._frame_missing = 0
        self._frame_length = 0

    def dataReceived(self, data: bytes) -> None:
        """Whole unfragmented binary frames go to the browser as they came; the rest goes
        through Autobahn.

        A frame the container may send (unmasked, no extension) is byte for byte the frame the
        bridge would send the browser for the same message, so parsing, joining and
        re-framing 64 KiB a message (four TLS records each) is skipped: the relay's largest
        CPU cost after the kernel and OpenSSL. A frame is held until complete, so a container
        gone mid-frame leaves the browser's framing intact for its close frame.
        """
        while data:
            if self._frame is None:
                header = self._passable_header(data)
                if header is None:
                    self._dataReceived(data)
                    return
                header_length, self._frame_length = header
                self._frame = []
                self._frame_missing = header_length + self._frame_length
            missing = self._frame_missing
            if len(data) < missing:
                self._frame.append(data)
                self._frame_missing = missing - len(data)
                return
            self._frame.append(data if len(data) == missing else data[:missing])
            data = data[missing:]
            frame, self._frame = self._frame, None
            self._bridge._frame_to_browser(frame, self._frame_length)

    def _passable_header(self, data: bytes) -> tuple[int, int] | None:
        """Header and payload length of the frame ``data`` starts with, if it may pass
        through: FIN, binary, no RSV bits, unmasked, minimal length, within the size limits,
        with Autobahn between messages and nothing for it to do on data frames."""
        if (
            len(data) < 2
            or data[0] != _FIN_BINARY
            or data[1] & 0x80
            or self.state != WebSocketProtocol.STATE_OPEN
            or self.data
            or self.current_frame is not None
            or self.inside_message
            or self.failedByMe
            or self.autoPingTimeoutCall is not None
            or not self._bridge._passing_frames()
        ):
            return None
        length = data[1]
        if length < 126:
            header = 2
        elif length == 126:
            header = 4
            length = int.from_bytes(data[2:4], "big") if len(data) >= header else 0
            if length < 126:
                return None
        else:
            header = 10
            length = int.from_bytes(data[2:10], "big") if len(data) >= header else 0
            if not 0xFFFF < length <= 0x7FFFFFFFFFFFFFFF:
                return None
        if 0 < self.maxFramePayloadSize < length or 0 < self.maxMessagePayloadSize < length:
            return None
        return header, length

    def onConnecting(self, transport_details: object) -> ConnectingRequest:
        return self._connecting_request

    def _onOpen(self) -> None:
        # Autobahn's adapter would now extract the container's (throw-away, self-signed)
        # certificate and TLS channel id into transport details: memory and CPU per bridge
        # for something nobody reads here.
        self.onOpen()

    def onConnect(self, response: ConnectionResponse) -> None:
        pass

    def failHandshake(self, reason: str) -> None:
        # The browser's refusal logs this, once (DesktopBridgeProtocol.failHandshake).
        self.log = _SILENT
        super().failHandshake(reason)

    def onOpen(self) -> None:
        _forget_handshake(self)
        # The container's session tickets came before its 101: the next bridge can resume.
        request = self._connecting_request
        self._bridge.factory.container_tls.remember(
            request.host, request.port, self.transport.getHandle()  # type: ignore[union-attr]  # a TLS transport
        )
        if not self.opened.called:
            self.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self._bridge._from_container(payload, isBinary)

    def dropConnection(self, abort: bool = False) -> None:
        self._bridge._decouple()
        super().dropConnection(abort)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        _forget_close_timer(self)
        if not self.opened.called:
            status = None
            status_line = getattr(self, "http_status_line", None)
            if status_line:
                parts = status_line.split()
                if len(parts) > 1 and parts[1].isdigit():
                    status = int(parts[1])
            why = self.wasNotCleanReason or reason or "connection closed during the handshake"
            self.opened.errback(Failure(ContainerRefused(why, status)))
        self._bridge._container_closed(code, reason)


def _container_client_factory(
    reactor: IReactorTime, *, max_message_size: int, ping_interval: float, open_timeout: float
) -> WebSocketClientFactory:
    """One factory for all container connections: it only carries options (per-connection
    host, headers and subprotocols come from each protocol's onConnecting)."""
    factory = WebSocketClientFactory(url="wss://127.0.0.1:6901" + _CONTAINER_PATH, reactor=reactor)
    factory.setProtocolOptions(
        maxFramePayloadSize=max_message_size,
        maxMessagePayloadSize=max_message_size,
        autoFragmentSize=0,
        # Keep the loopback connection visibly alive, but set no pong deadline: while a slow
        # browser holds this side paused, its pongs sit unread, and a deadline would cut a
        # healthy desktop. A dead container shows up as a closed TCP connection anyway.
        autoPingInterval=ping_interval,
        autoPingTimeout=0,
        openHandshakeTimeout=open_timeout,
        closeHandshakeTimeout=5,
        serverConnectionDropTimeout=1,
        failByDrop=False,
    )
    return factory
