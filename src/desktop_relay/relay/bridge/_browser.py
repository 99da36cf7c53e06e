"""The browser side of a bridge: the server protocol that owns one bridge's state. It asks the
resolver, opens the container side, answers the browser's upgrade only once the container's is
done, couples the two transports for flow control, copies the browser's messages to the
container (telling the input classifier), and closes each side when the other goes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet import defer
from twisted.internet.error import ConnectError, DNSLookupError
from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from desktop_relay.relay.rfb import FilterFailed, InputClassifier, ViewOnlyFilter

from ._container import _ContainerProtocol
from ._descriptors import descriptors_short
from ._types import (
    _BROWSER_GONE_REASON,
    _CONTAINER_GONE_REASON,
    CLOSE_CONTAINER_GONE,
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    BridgeClosed,
    BridgeTarget,
    ContainerRefused,
    UpgradeRefused,
)
from ._wire import (
    _SILENT,
    _close,
    _forget_close_timer,
    _forget_handshake,
    _LeanTransportMixin,
    _sendable,
    _state,
    _status_reason,
)

if TYPE_CHECKING:
    from ._factory import DesktopBridgeFactory


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
        # A look's browser-to-container stream goes through this (see open_look).
        self._view_only: ViewOnlyFilter | None = None
        self._gave_up_told = False
        self._opened_told = False
        # For a refused upgrade's log line: its session, user and why (see failHandshake).
        self._why: tuple[str | None, str | None, str] | None = None

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
            if isinstance(deny, UpgradeRefused):
                self._why = (deny.session, deny.user, deny.why)
            raise ConnectionDeny(deny.code, _status_reason(deny.code, deny.reason)) from None
        except defer.CancelledError:
            raise self._refused() from None
        except defer.TimeoutError:
            self._why = (None, None, f"the session check took more than {factory.open_timeout:g} s")
            raise ConnectionDeny(503, "Session check timed out") from None
        except Exception:  # noqa: BLE001 - a resolver bug must still answer the browser
            self._log.failure("resolving the upgrade of {path} failed", path=request.path)
            raise ConnectionDeny(500, "Internal Server Error") from None
        finally:
            self._waiting = None
        if self._browser_gone:
            raise self._refused()

        # Checked before anything of the bridge exists: out of descriptors, the container's
        # connection would fail half-way, or starve the relay's other work.
        short = descriptors_short()
        if short is not None:
            self._why = (target.session_id, target.user_id, f"out of file descriptors: {short}")
            raise ConnectionDeny(503, "Relay has no room for another desktop connection")
        self.target = target
        if target.looking_at is not None:
            self._view_only = ViewOnlyFilter()
            self._view_only.input_allowed = target.control
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
        """Say why the container side failed, in the refusal's one log line (failHandshake)."""
        self._why = (target.session_id, target.user_id, f"its desktop container refused: {why}")

    def failHandshake(self, reason: str, code: int = 400, responseHeaders: Any = None) -> None:
        """Refuse the upgrade with one log line that says whose it was and why; Autobahn's own
        two lines about it (the failure, the dropped connection) would only repeat it."""
        path = getattr(self, "http_request_path", None)
        session, user, why = self._why or (_session_in(path), None, reason)
        log = self._log.warn if code >= 500 else self._log.info
        log(
            "refused desktop upgrade for {path} from {peer}: {status} {reason} (session {session}, user {user})",
            path=path,
            peer=getattr(self, "peer", None),
            status=code,
            reason=why,
            session=session,
            user=user,
        )
        self.log = _SILENT
        super().failHandshake(reason, code, responseHeaders)

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

    @property
    def control(self) -> bool:
        """Whether a look's input reaches the desktop (always True for the owner's own bridge)."""
        return self._view_only is None or self._view_only.input_allowed

    @control.setter
    def control(self, allowed: bool) -> None:
        if self._view_only is not None:
            self._view_only.input_allowed = allowed

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        container = self._container
        if self._closing or container is None or container.state != WebSocketProtocol.STATE_OPEN:
            return
        if self._view_only is not None:
            self._look_message(container, payload, isBinary)
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

    def _look_message(self, container: _ContainerProtocol, payload: bytes, is_binary: bool) -> None:
        """A look's message: only what the filter lets through reaches the desktop, and a
        stream it cannot follow closes the look. A viewer never counts as the pupil's activity."""
        assert self._view_only is not None and self.target is not None
        try:
            if not is_binary:
                raise FilterFailed("a text message from the browser")
            passed = self._view_only.feed(payload)
        except FilterFailed as e:
            self._log.warn("closing the look at {session} by {user}: its stream cannot be filtered ({why})",
                           session=self.target.session_id, user=self.target.user_id, why=str(e))
            self.close_bridge(CLOSE_POLICY, "view-only stream not understood")
            return
        if passed:
            self.bytes_to_container += len(passed)
            container.sendMessage(passed, True)

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
        if not self._opened:
            # A refused upgrade: its one line is failHandshake's.
            self._tell_gone_waiters()
            return
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
        self._tell_gone_waiters()

    def _tell_gone_waiters(self) -> None:
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


def _session_in(path: str | None) -> str | None:
    # /desktop/<id>/websockify or /look/<id>/websockify, as the relay routes them.
    parts = (path or "").split("/")
    return parts[2] if len(parts) == 4 and parts[1] in ("desktop", "look") and parts[2] else None
