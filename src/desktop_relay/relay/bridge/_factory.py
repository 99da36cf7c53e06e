"""The bridges' server factory: the options both sides share, one TLS context and one client
factory for all container connections, the registry of live bridges by session, and closing
them by session, by user or all at once."""

from __future__ import annotations

from collections.abc import Iterable

from autobahn.twisted.websocket import WebSocketServerFactory
from autobahn.websocket.types import ConnectingRequest, ConnectionRequest
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IReactorTCP
from twisted.logger import Logger
from twisted.python.failure import Failure

from desktop_relay.backend import Backend
from desktop_relay.metrics import RelayMetrics

from ._browser import DesktopBridgeProtocol
from ._container import _CONTAINER_PATH, _container_client_factory, _ContainerProtocol, _OfferedProtocols, _OneProtocol
from ._tls import ContainerTLS
from ._types import (
    CLOSE_GOING_AWAY,
    CLOSE_SESSION_STOPPED,
    CLOSE_SIGNED_OUT,
    CONTAINER_GONE_GRACE,
    BridgeListener,
    BridgeTarget,
    InputListener,
    Resolver,
    Revocations,
    _ignore_input,
    _NoListener,
)


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
        self._revocations: list[Revocations] = []
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
        self.container_tls = ContainerTLS()
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
            self.container_tls.to(backend.host, backend.port),
            TCP4ClientEndpoint(self.reactor, backend.host, backend.port, timeout=max(1, int(self.open_timeout))),
        )
        attempt = endpoint.connect(_OneProtocol(proto))

        def cancel(_: defer.Deferred) -> None:
            attempt.cancel()
            if proto.transport is not None:
                proto.transport.abortConnection()  # type: ignore[attr-defined]  # a TCP/TLS transport

        opened: defer.Deferred = defer.Deferred(cancel)

        def failed(failure: Failure) -> None:
            self.container_tls.forget(backend.host, backend.port)
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

    def tell_revocations(self, revocations: Revocations) -> None:
        """Have `revocations` told of every close_session and close_user, before the bridges close."""
        self._revocations.append(revocations)

    def close_session(self, session_id: str, code: int = CLOSE_SESSION_STOPPED, reason: str = "session stopped") -> int:
        """Close every bridge of a session; returns how many were told to close."""
        for revocations in self._revocations:
            revocations.session_revoked(session_id)
        bridges = self.bridges_for_session(session_id)
        for bridge in bridges:
            bridge.close_bridge(code, reason)
        return len(bridges)

    def close_user(self, user_id: str, code: int = CLOSE_SIGNED_OUT, reason: str = "signed out") -> int:
        """Close every bridge of a user (sign-out, account disabled); returns how many."""
        for revocations in self._revocations:
            revocations.user_revoked(user_id)
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
