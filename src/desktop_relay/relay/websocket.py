"""The WebSocket bridge: one browser's VNC WebSocket joined to its desktop container's.

This module owns the upgrade of ``/desktop/<session-id>/websockify`` once twisted.web has handed
it to Autobahn: asking the injected resolver who may connect where, opening the container's
``wss://…/websockify`` with the relay's own Basic auth, answering the browser's upgrade only once
the container's is done, copying messages both ways under producer/consumer flow control,
telling the injected ``on_input`` when the browser's messages carry a person's input (see
:mod:`desktop_relay.relay.rfb`), and closing each side when the other goes, with codes that say
why.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

import attr
from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.util import encode_truncate
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import (
    ConnectingRequest,
    ConnectionDeny,
    ConnectionRequest,
    ConnectionResponse,
)
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.error import ConnectError, DNSLookupError
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IPushProducer,
    IReactorTCP,
    IReactorTime,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from desktop_relay.backend import Backend, container_tls_options
from desktop_relay.metrics import RelayMetrics
from desktop_relay.relay.rfb import InputClassifier

__all__ = [
    "CLOSE_CONTAINER_GONE",
    "CLOSE_GOING_AWAY",
    "CLOSE_SESSION_STOPPED",
    "CLOSE_SIGNED_OUT",
    "BridgeClosed",
    "BridgeListener",
    "BridgeTarget",
    "DesktopBridgeFactory",
    "DesktopBridgeProtocol",
    "InputListener",
    "Resolver",
]

#: The user's session was stopped (idle, lifetime, admin): the desktop is gone for good.
CLOSE_SESSION_STOPPED = 4000
#: The user signed out; the web client should not try to reconnect.
CLOSE_SIGNED_OUT = 4001
#: The container's connection ended without a close code of its own (told to the browser).
CLOSE_CONTAINER_GONE = 1011
#: The browser (or the relay, at shutdown) is leaving (told to the container).
CLOSE_GOING_AWAY = 1001

_CONTAINER_GONE_REASON = "desktop container went away"
# A container that vanished (killed, crashed, out of memory) drops its TCP connection a moment
# before the lifecycle learns from the engine why; the browser waits this long for that reason
# (4000 and the words) before it gets the bare 1011, after which the web client would retry.
# Longer than the lifecycle's wait for a container stopped from outside (SHUTDOWN_GRACE, 3 s).
CONTAINER_GONE_GRACE = 4.0
_BROWSER_GONE_REASON = "browser went away"

# Codes a close frame may carry (RFC 6455 7.4; 1004-1006 and 1015 are never sent).
_SENDABLE_CODES = frozenset(WebSocketProtocol.CLOSE_STATUS_CODES_ALLOWED)

# Kasm's web client reads only binary frames in the "binary" subprotocol; the path is fixed by
# KasmVNC (any path upgrades, Kasm's client uses this one).
_CONTAINER_PATH = "/websockify"

# First byte of a whole (FIN) binary frame without extension bits.
_FIN_BINARY = 0x82


@attr.s(frozen=True, auto_attribs=True)
class BridgeTarget:
    """Where an authorised upgrade goes: the session's container, whose it is, and the browser's
    address (behind a trusted proxy, the one it forwarded)."""

    backend: Backend
    session_id: str
    user_id: str
    address: str = ""


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


class ContainerRefused(Exception):
    """The container's WebSocket could not be opened; ``status`` is its HTTP answer, if any."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def _sendable(code: int | None) -> bool:
    return code is not None and (code in _SENDABLE_CODES or 3000 <= code <= 4999)


def _status_reason(code: int, reason: str | None) -> str:
    """One clean line for an HTTP status line: resolver text must not inject headers."""
    if not reason:
        try:
            return HTTPStatus(code).phrase
        except ValueError:
            return "Refused"
    return " ".join(str(reason).split())[:200]


def _state(proto: WebSocketProtocol) -> int | None:
    # Autobahn sets .state only once the TCP connection is made.
    return getattr(proto, "state", None)


def _close(proto: WebSocketProtocol, code: int, reason: str) -> None:
    """Start the closing handshake with any valid code (Autobahn's sendClose takes only
    1000 and 3000-4999, and we must send 1001/1011 too)."""
    state = _state(proto)
    if state == WebSocketProtocol.STATE_OPEN:
        proto.sendCloseFrame(code=code, reasonUtf8=encode_truncate(reason, 123), isReply=False)
    elif state in (WebSocketProtocol.STATE_CONNECTING, WebSocketProtocol.STATE_PROXY_CONNECTING):
        proto.dropConnection(abort=True)


def _forget_close_timer(proto: WebSocketProtocol) -> None:
    # Autobahn leaves its close-handshake timer behind when the TCP goes first.
    call = getattr(proto, "closeHandshakeTimeoutCall", None)
    if call is not None:
        call.cancel()
        proto.closeHandshakeTimeoutCall = None


@implementer(IPushProducer)
class _Valve:
    """Pauses and resumes reading from one transport for the other's sake.

    ``stopProducing`` does nothing: a transport calls it on its producer when it is lost, and
    the bridge closes the other side itself, with a close frame, rather than cutting its TCP.
    """

    __slots__ = ("_transport", "paused")

    def __init__(self, transport: IPushProducer) -> None:
        self._transport = transport
        self.paused = 0

    def pauseProducing(self) -> None:
        self.paused += 1
        self._transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._transport.resumeProducing()

    def stopProducing(self) -> None:
        pass


class _LeanTransportMixin:
    """Entry points of Autobahn's Twisted adapter without their debug-log arguments.

    Autobahn formats ``hltype(...)``/``hlval(...)`` for a debug line on every read and every
    write even when debug logging is off; on a bridge that is one call per TLS record (16 KiB)
    and about a tenth of the relay's CPU. These do the same work without it.
    """

    def dataReceived(self, data: bytes) -> None:
        self._dataReceived(data)  # type: ignore[attr-defined]

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        if sync or chopsize or self.send_queue or self.logOctets:  # type: ignore[attr-defined]
            super().sendData(data, sync, chopsize)  # type: ignore[misc]
            return
        self.transport.write(data)  # type: ignore[attr-defined]
        if self.state == WebSocketProtocol.STATE_OPEN:  # type: ignore[attr-defined]
            self.trafficStats.outgoingOctetsWireLevel += len(data)  # type: ignore[attr-defined]


class _OneProtocol(Factory):
    """Hands out one prepared protocol (``connectProtocol`` makes a new class per call, which
    costs about 2 KiB per bridge for as long as it lives)."""

    noisy = False

    def __init__(self, proto: Protocol) -> None:
        self._proto = proto

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        return self._proto


def _forget_handshake(proto: WebSocketProtocol) -> None:
    # Autobahn keeps the raw handshake and parsed headers for its test suite; a long-lived
    # idle bridge has no use for them.
    for name in ("http_request_data", "http_response_data", "http_headers", "http_request_params"):
        if hasattr(proto, name):
            setattr(proto, name, None)


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

    def onOpen(self) -> None:
        _forget_handshake(self)
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


class DesktopBridgeProtocol(_LeanTransportMixin, WebSocketServerProtocol):  # type: ignore[misc]  # see above
    """The browser's side of one bridge; it owns the bridge's state and its container side."""

    factory: DesktopBridgeFactory
    _log = Logger()

    def __init__(self) -> None:
        super().__init__()
        self.target: BridgeTarget | None = None
        self._container: _ContainerProtocol | None = None
        self._waiting: defer.Deferred | None = None
        self._refusal: ConnectionDeny | None = None
        self._pending: list[tuple[bytes, bool]] = []
        self._valves: tuple[_Valve, _Valve] | None = None
        self._closing = False
        self._browser_gone = False
        self._container_gone = True
        self._gone_waiters: list[defer.Deferred[None]] = []
        self.bytes_to_browser = 0
        self.bytes_to_container = 0
        # How much of those the metrics have been told (see DesktopBridgeFactory.count_bytes).
        self.counted_to_browser = 0
        self.counted_to_container = 0
        self._opened = False
        self._close_codes: dict[str, int | None] = {}
        self._unexplained: IDelayedCall | None = None
        self._input = InputClassifier()
        self._gave_up_told = False
        self._opened_told = False

    # -- opening ------------------------------------------------------------------------

    # Autobahn awaits a Deferred from onConnect (its type hints only name plain results).
    def onConnect(self, request: ConnectionRequest) -> defer.Deferred[str | None]:  # type: ignore[override]
        return defer.Deferred.fromCoroutine(self._open(request))

    async def _open(self, request: ConnectionRequest) -> str | None:
        factory = self.factory
        try:
            self._waiting = defer.maybeDeferred(factory._resolve, request)
            self._waiting.addTimeout(factory.open_timeout, factory.reactor)
            target: BridgeTarget = await self._waiting
        except ConnectionDeny as deny:
            raise ConnectionDeny(deny.code, _status_reason(deny.code, deny.reason)) from None
        except defer.CancelledError:
            raise self._refused() from None
        except defer.TimeoutError:
            self._log.warn("checking the upgrade of {path} timed out", path=request.path)
            raise ConnectionDeny(503, "Session check timed out") from None
        except Exception:  # noqa: BLE001 - a resolver bug must still answer the browser
            self._log.failure("resolving the upgrade of {path} failed", path=request.path)
            raise ConnectionDeny(500, "Internal Server Error") from None
        finally:
            self._waiting = None
        if self._browser_gone:
            raise self._refused()

        self.target = target
        self._container_gone = False
        factory._register(self)
        container = self._container = factory._container_protocol(self, target, request)
        try:
            self._waiting = factory._connect_container(container, target.backend)
            await self._waiting
        except BaseException as e:  # noqa: BLE001 - every failure becomes an HTTP answer
            if container.transport is None:
                # Never connected, so no onClose will come to say the container side is gone.
                self._container_gone = True
            raise self._container_refusal(target, e) from None
        finally:
            self._waiting = None
        if self._browser_gone:
            raise self._refused()

        chosen = container.websocket_protocol_in_use
        if chosen is not None and chosen not in request.protocols:
            self._refuse_log(target, f"it chose subprotocol {chosen!r}, not offered by the browser")
            _close(container, CLOSE_GOING_AWAY, "subprotocol not offered by the browser")
            raise ConnectionDeny(502, "Desktop container chose an unknown subprotocol")
        return chosen

    def _container_refusal(self, target: BridgeTarget, error: BaseException) -> ConnectionDeny:
        """The browser's answer when its container could not be opened; logs why."""
        if isinstance(error, defer.CancelledError):
            return self._refused()
        if isinstance(error, defer.TimeoutError):
            self._refuse_log(target, f"no answer within {self.factory.open_timeout:g} s")
            return ConnectionDeny(504, "Desktop container did not answer in time")
        if isinstance(error, ContainerRefused):
            shown = f" (HTTP {error.status})" if error.status else ""
            self._refuse_log(target, error.reason)
            return ConnectionDeny(502, f"Desktop container refused the connection{shown}")
        if isinstance(error, (ConnectError, DNSLookupError)):
            self._refuse_log(target, str(error) or type(error).__name__)
        else:
            self._refuse_log(target, f"{type(error).__name__}: {error}")
        return ConnectionDeny(502, "Desktop container unreachable")

    def _refused(self) -> ConnectionDeny:
        container = self._container
        if container is not None and _state(container) not in (None, WebSocketProtocol.STATE_CLOSED):
            container.dropConnection(abort=True)
        return self._refusal or ConnectionDeny(503, "Connection abandoned")

    def _refuse_log(self, target: BridgeTarget, why: str) -> None:
        self._log.warn(
            "desktop container of session {session} refused a bridge for {user}: {why}",
            session=target.session_id,
            user=target.user_id,
            why=why,
        )

    def onOpen(self) -> None:
        container = self._container
        target = self.target
        assert container is not None and target is not None
        _forget_handshake(self)
        self._opened = True
        try:
            self._couple(container)
            pending, self._pending = self._pending, []
            for payload, is_binary in pending:
                self._to_browser(payload, is_binary)
            self._log.info(
                "bridge open {session} for {user} from {address} (subprotocol {subprotocol})",
                session=target.session_id,
                user=target.user_id,
                address=target.address,
                subprotocol=self.websocket_protocol_in_use,
            )
        except Exception:  # noqa: BLE001 - Autobahn would only log it; close the bridge too
            self._log.failure("opening the bridge of session {session} failed", session=target.session_id)
            self.close_bridge(CLOSE_CONTAINER_GONE, "relay error")
            return
        self._opened_told = True
        try:
            self.factory.listener.bridge_opened(target)
        except Exception:  # noqa: BLE001 - the listener must not break the desktop
            self._log.failure("telling that the bridge of {session} opened failed", session=target.session_id)

    def _couple(self, container: _ContainerProtocol) -> None:
        """Each transport's full write buffer pauses reading from the other one.

        The browser transport was taken over from twisted.web, whose HTTPChannel is still its
        registered producer; it must go first. The container transport is a
        TLSMemoryBIOProtocol: as a producer it pauses the TCP transport below it; as a consumer
        it passes its TCP transport's pauses on to us, and pauses us itself while OpenSSL
        holds back writes (renegotiation).
        """
        # Both are IConsumer and IPushProducer as well as ITransport, which no one type says.
        browser_transport: Any = self.transport
        container_transport: Any = container.transport
        assert browser_transport is not None and container_transport is not None
        browser_transport.unregisterProducer()
        to_browser = _Valve(container_transport)
        to_container = _Valve(browser_transport)
        browser_transport.registerProducer(to_browser, True)
        container_transport.registerProducer(to_container, True)
        self._valves = (to_browser, to_container)

    def _decouple(self) -> None:
        """Undo _couple before any close: a TCP or TLS transport with a registered producer
        postpones its loseConnection, and a paused side could not read its close frame."""
        if self._valves is None:
            return
        self._valves = None
        container = self._container
        transports: tuple[Any, ...] = (self.transport, container.transport if container else None)  # see _couple
        for transport in transports:
            if transport is not None and getattr(transport, "connected", True):
                transport.unregisterProducer()
                transport.resumeProducing()

    @property
    def paused_count(self) -> tuple[int, int]:
        """How often the browser's, resp. the container's, full buffer paused the other side."""
        if self._valves is None:
            return (0, 0)
        return (self._valves[0].paused, self._valves[1].paused)

    # -- copying ------------------------------------------------------------------------

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        container = self._container
        if self._closing or container is None or container.state != WebSocketProtocol.STATE_OPEN:
            return
        self.bytes_to_container += len(payload)
        container.sendMessage(payload, isBinary)
        # Classified after it is on its way: the desktop never waits for the idle clock.
        classifier = self._input
        if not isBinary:
            # RFB travels in binary messages (text ones only in websockify's obsolete base64
            # subprotocol): whatever this is, the parser cannot follow it.
            classifier.give_up("a text message from the browser")
        if classifier.feed(payload):
            self._input_seen(classifier)

    def _input_seen(self, classifier: InputClassifier) -> None:
        target = self.target
        assert target is not None
        if classifier.gave_up is not None and not self._gave_up_told:
            self._gave_up_told = True
            self._log.warn(
                "idle detection off for a bridge of {session}: its browser's traffic counts as "
                "input from now on ({why})",
                session=target.session_id,
                why=classifier.gave_up,
            )
        try:
            self.factory.on_input(target.session_id)
        except Exception:  # noqa: BLE001 - the idle clock must never break the desktop
            self._log.failure("recording input of session {session} failed", session=target.session_id)

    def _from_container(self, payload: bytes, is_binary: bool) -> None:
        if self._closing:
            return
        if self.state != WebSocketProtocol.STATE_OPEN:
            # Bytes right after the container's 101 (the RFB banner) may come before the
            # browser's 101 is out; they wait here, at most one read's worth.
            self._pending.append((payload, is_binary))
            return
        self._to_browser(payload, is_binary)

    def _to_browser(self, payload: bytes, is_binary: bool) -> None:
        self.bytes_to_browser += len(payload)
        self.sendMessage(payload, is_binary)

    def _passing_frames(self) -> bool:
        """Whether the container's frames may now go straight to the browser's transport."""
        return (
            not self._closing
            and self.state == WebSocketProtocol.STATE_OPEN
            and not self._pending
            and not self.send_queue
        )

    def _frame_to_browser(self, frame: list[bytes], payload_length: int) -> None:
        # Dropped like a message would be if the bridge started closing meanwhile.
        if self._closing or self.state != WebSocketProtocol.STATE_OPEN:
            return
        self.bytes_to_browser += payload_length
        self.transport.writeSequence(frame)  # type: ignore[union-attr]

    # -- closing ------------------------------------------------------------------------

    def close_bridge(self, code: int, reason: str) -> None:
        """Close both sides with ``code`` (or refuse the upgrade if it is still pending)."""
        if self.state == WebSocketProtocol.STATE_CONNECTING:
            self._refusal = ConnectionDeny(503, _status_reason(503, reason))
            if self._waiting is not None:
                self._waiting.cancel()
            return
        self._explained()
        if self._closing:
            return
        self._closing = True
        self._decouple()
        _close(self, code, reason)
        if self._container is not None:
            _close(self._container, code, reason)

    def dropConnection(self, abort: bool = False) -> None:
        self._decouple()
        super().dropConnection(abort)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        _forget_close_timer(self)
        self._explained()
        self._browser_gone = True
        self._close_codes.setdefault("browser", code)
        if self.target is None:
            # Closed before the resolver answered: nothing registered, nothing to tell.
            if self._waiting is not None:
                self._waiting.cancel()
            return
        if self._container is None or not self._container.opened.called:
            if self._waiting is not None:
                self._waiting.cancel()
        elif not self._closing:
            self._closing = True
            self._decouple()
            if _sendable(code):
                assert code is not None
                _close(self._container, code, reason or "")
            else:
                _close(self._container, CLOSE_GOING_AWAY, _BROWSER_GONE_REASON)
        self._maybe_gone()

    def _container_closed(self, code: int | None, reason: str | None) -> None:
        self._container_gone = True
        self._close_codes.setdefault("container", code)
        if not self._closing and self.state == WebSocketProtocol.STATE_OPEN:
            if _sendable(code):
                assert code is not None
                self._closing = True
                self._decouple()
                _close(self, code, reason or "")
            elif self._unexplained is None:
                # Still registered, so the session's end (close_session) reaches this bridge.
                self._decouple()
                self._unexplained = self.factory.reactor.callLater(
                    self.factory.container_gone_grace, self.close_bridge, CLOSE_CONTAINER_GONE, _CONTAINER_GONE_REASON
                )
        self._maybe_gone()

    def _explained(self) -> None:
        """The bridge closes for a known reason: no bare 1011 for a vanished container later."""
        if self._unexplained is not None:
            if self._unexplained.active():
                self._unexplained.cancel()
            self._unexplained = None

    def _maybe_gone(self) -> None:
        if not (self._browser_gone and self._container_gone) or self.target is None:
            return
        self.factory._unregister(self, self._close_codes.get("browser"), self._opened)
        self._log.info(
            "bridge closed {session} for {user}: browser code {browser_code}, container code "
            "{container_code}; {to_browser} bytes to the browser, {to_container} to the container",
            session=self.target.session_id,
            user=self.target.user_id,
            browser_code=self._close_codes.get("browser"),
            container_code=self._close_codes.get("container"),
            to_browser=self.bytes_to_browser,
            to_container=self.bytes_to_container,
        )
        if self._opened_told:
            closed = BridgeClosed(
                browser_code=self._close_codes.get("browser"),
                container_code=self._close_codes.get("container"),
                bytes_to_browser=self.bytes_to_browser,
                bytes_to_container=self.bytes_to_container,
            )
            try:
                self.factory.listener.bridge_closed(self.target, closed)
            except Exception:  # noqa: BLE001 - the listener must not keep the bridge's waiters waiting
                self._log.failure("telling that the bridge of {session} closed failed", session=self.target.session_id)
        waiters, self._gone_waiters = self._gone_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def when_gone(self) -> defer.Deferred[None]:
        """A Deferred that fires once both connections of this bridge are closed."""
        d: defer.Deferred[None] = defer.Deferred()
        if self._browser_gone and self._container_gone:
            d.callback(None)
        else:
            self._gone_waiters.append(d)
        return d


class DesktopBridgeFactory(WebSocketServerFactory):
    """Autobahn server factory for ``WebSocketResource``: bridges browsers to their containers.

    :param resolve: checks an upgrade and names its container (see :data:`Resolver`).
    :param reactor: for connections and timers.
    :param url: the public WebSocket URL base (``ws://127.0.0.1:8080``, or ``wss://school.example``
        behind Apache); used as the Origin toward the container when the browser sent none.
    :param max_message_size: largest message (and frame) accepted from either side, in bytes.
    :param ping_interval: seconds between pings on idle connections (0: no pings).
    :param open_timeout: seconds for the resolver, and again for the container, to answer.
    :param on_input: told the session id whenever a browser's message carried a person's input
        (see :data:`InputListener`); by default nobody is told.
    :param listener: told when a bridge opens and when an opened one has closed (see
        :class:`BridgeListener`); by default nobody is told.
    :param metrics: told of bridges beginning and ending and of the bytes they relayed; the
        copying itself never calls it (see :meth:`count_bytes`).
    """

    protocol = DesktopBridgeProtocol  # type: ignore[assignment]  # Factory's protocol type is generic
    _log = Logger()
    #: Seconds a bridge whose container vanished waits for the session's end to say why.
    container_gone_grace = CONTAINER_GONE_GRACE

    def __init__(
        self,
        resolve: Resolver,
        *,
        reactor: IReactorTCP,
        url: str,
        max_message_size: int,
        ping_interval: float,
        open_timeout: float,
        on_input: InputListener = _ignore_input,
        listener: BridgeListener = _NoListener(),
        metrics: RelayMetrics | None = None,
    ) -> None:
        # No Server header of ours in the 101: Apache sets its own.
        super().__init__(url=url, server=None, externalPort=None, reactor=reactor)
        self._resolve = resolve
        self.open_timeout = open_timeout
        self.on_input = on_input
        self.listener = listener
        self._metrics = metrics or RelayMetrics()
        self._bridges: dict[str, set[DesktopBridgeProtocol]] = {}
        self._public_origin = _origin_of(url)
        self.setProtocolOptions(
            # The resolver checks Origin against the configured public URL; Autobahn's own
            # check compares with the port it thinks it listens on, which behind Apache is wrong.
            allowedOrigins=["*"],
            allowNullOrigin=True,
            # A plain GET here is a mistake; say so instead of Autobahn's status page.
            webStatus=False,
            maxFramePayloadSize=max_message_size,
            maxMessagePayloadSize=max_message_size,
            autoFragmentSize=0,
            autoPingInterval=ping_interval,
            autoPingTimeout=ping_interval,
            # Our own timeouts (resolver, container) answer first, with a status that says why.
            openHandshakeTimeout=2 * open_timeout + 5,
            closeHandshakeTimeout=5,
            failByDrop=False,
            # Bridged bytes are the peer's business: no compression (none is offered either).
            perMessageCompressionAccept=lambda offers: None,
        )
        # One OpenSSL context for all containers: a context per connection costs memory and
        # set-up time, and the options are the same for every container.
        self._container_tls = container_tls_options()
        self._container_factory = _container_client_factory(
            reactor,  # type: ignore[arg-type]  # the reactor is an IReactorTime as well
            max_message_size=max_message_size, ping_interval=ping_interval, open_timeout=open_timeout,
        )

    # -- used by the protocol -----------------------------------------------------------

    def _container_protocol(
        self, bridge: DesktopBridgeProtocol, target: BridgeTarget, request: ConnectionRequest
    ) -> _ContainerProtocol:
        backend = target.backend
        connecting = ConnectingRequest(
            host=backend.host,
            port=backend.port,
            resource=_CONTAINER_PATH,
            # Only these reach the container: never the browser's cookies or credentials.
            headers={"Authorization": backend.authorization.decode("ascii")},
            useragent="desktop-relay",
            # KasmVNC will not upgrade without an Origin; the resolver has vetted the browser's.
            origin=request.origin or self._public_origin,
            protocols=list(request.protocols),
        )
        proto = _ContainerProtocol(bridge, connecting)
        proto.factory = _OfferedProtocols(self._container_factory, connecting.protocols)
        return proto

    def _connect_container(self, proto: _ContainerProtocol, backend: Backend) -> defer.Deferred:
        """Connect ``proto`` over TLS; fires when its WebSocket is open, fails within open_timeout."""
        endpoint = wrapClientTLS(
            self._container_tls,
            TCP4ClientEndpoint(self.reactor, backend.host, backend.port, timeout=max(1, int(self.open_timeout))),
        )
        attempt = endpoint.connect(_OneProtocol(proto))

        def cancel(_: defer.Deferred) -> None:
            attempt.cancel()
            if proto.transport is not None:
                proto.transport.abortConnection()  # type: ignore[attr-defined]  # a TCP/TLS transport

        opened: defer.Deferred = defer.Deferred(cancel)

        def failed(failure: Failure) -> None:
            if not opened.called:
                opened.errback(failure)

        def succeeded(p: _ContainerProtocol) -> None:
            if not opened.called:
                opened.callback(p)

        attempt.addErrback(failed)
        proto.opened.addCallbacks(succeeded, failed)
        opened.addTimeout(self.open_timeout, self.reactor)
        return opened

    def _register(self, bridge: DesktopBridgeProtocol) -> None:
        assert bridge.target is not None
        self._bridges.setdefault(bridge.target.session_id, set()).add(bridge)
        self._metrics.bridge_registered()

    def _unregister(self, bridge: DesktopBridgeProtocol, browser_code: int | None, opened: bool) -> None:
        assert bridge.target is not None
        bridges = self._bridges.get(bridge.target.session_id)
        if bridges is None or bridge not in bridges:
            return
        bridges.discard(bridge)
        if not bridges:
            del self._bridges[bridge.target.session_id]
        self._metrics.bytes_relayed(*_uncounted(bridge))
        self._metrics.bridge_gone(browser_code, opened=opened)

    # -- public -------------------------------------------------------------------------

    def bridges_for_session(self, session_id: str) -> frozenset[DesktopBridgeProtocol]:
        """The live (or still opening) bridges of one session."""
        return frozenset(self._bridges.get(session_id, ()))

    @property
    def bridge_count(self) -> int:
        """How many bridges are live or opening."""
        return sum(len(b) for b in self._bridges.values())

    def _all(self) -> Iterable[DesktopBridgeProtocol]:
        return [b for bridges in self._bridges.values() for b in bridges]

    def count_bytes(self) -> None:
        """Tell the metrics what the live bridges relayed since the last count (a closing
        bridge tells its rest itself); called now and then, so long bridges show up too."""
        to_browser = to_container = 0
        for bridge in self._all():
            b, c = _uncounted(bridge)
            to_browser += b
            to_container += c
        self._metrics.bytes_relayed(to_browser, to_container)

    def close_session(self, session_id: str, code: int = CLOSE_SESSION_STOPPED, reason: str = "session stopped") -> int:
        """Close every bridge of a session; returns how many were told to close."""
        bridges = self.bridges_for_session(session_id)
        for bridge in bridges:
            bridge.close_bridge(code, reason)
        return len(bridges)

    def close_user(self, user_id: str, code: int = CLOSE_SIGNED_OUT, reason: str = "signed out") -> int:
        """Close every bridge of a user (sign-out, account disabled); returns how many."""
        bridges = [b for b in self._all() if b.target is not None and b.target.user_id == user_id]
        for bridge in bridges:
            bridge.close_bridge(code, reason)
        return len(bridges)

    def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "relay shutting down") -> defer.Deferred[None]:
        """Close every bridge; the Deferred fires when all their connections are gone."""
        bridges = list(self._all())
        gone = [b.when_gone() for b in bridges]
        for bridge in bridges:
            bridge.close_bridge(code, reason)
        return defer.gatherResults(gone).addCallback(lambda _: None)


def _uncounted(bridge: DesktopBridgeProtocol) -> tuple[int, int]:
    """The bytes a bridge relayed each way since it was last counted; marks them counted."""
    to_browser = bridge.bytes_to_browser - bridge.counted_to_browser
    to_container = bridge.bytes_to_container - bridge.counted_to_container
    bridge.counted_to_browser = bridge.bytes_to_browser
    bridge.counted_to_container = bridge.bytes_to_container
    return (to_browser, to_container)


def _origin_of(url: str) -> str:
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    return ("https" if scheme in ("wss", "https") else "http") + "://" + host


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
