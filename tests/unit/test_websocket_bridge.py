"""The WebSocket bridge over real loopback sockets: an Autobahn "browser", the bridge served by
twisted.web's Site through WebSocketResource (as in production), and a TLS Autobahn server
standing in for the desktop container."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import attr
import pytest
import pytest_twisted
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from OpenSSL._util import lib as _openssl
from tls_certs import pem, self_signed
from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IPushProducer
from twisted.internet.ssl import CertificateOptions, PrivateCertificate
from twisted.logger import LogLevel, globalLogPublisher
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

from desktop_relay.backend import Backend
from desktop_relay.metrics import RelayMetrics
from desktop_relay.relay.bridge import (
    CLOSE_CONTAINER_GONE,
    CLOSE_GOING_AWAY,
    CLOSE_SESSION_STOPPED,
    CLOSE_SIGNED_OUT,
    BridgeClosed,
    BridgeTarget,
    DesktopBridgeFactory,
    UpgradeRefused,
)

BANNER = b"RFB 003.008\n"
PASSWORD = "container-secret"
MAX_MESSAGE = 1 << 20
CHUNK = 64 * 1024


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def _sleep(seconds: float) -> defer.Deferred[None]:
    return task.deferLater(_reactor(), seconds, lambda: None)


@pytest.fixture(scope="module")
def container_cert() -> PrivateCertificate:
    """A throw-away self-signed certificate, like the one a Kasm container makes at start."""
    certificate, key = pem(*self_signed("localhost"))
    return PrivateCertificate.loadPEM(certificate + key)


# -- the stand-in container ---------------------------------------------------------------


@implementer(IPushProducer)
class _Streamer:
    """Sends numbered 64 KiB messages as fast as its transport lets it."""

    def __init__(self, proto: FakeDesktop, count: int) -> None:
        self.proto = proto
        self.left = count
        self.sent = 0
        self.paused = False
        self.pauses = 0

    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and self.left > 0 and self.proto.state == self.proto.STATE_OPEN:
            self.left -= 1
            self.proto.sendMessage(struct.pack("!Q", self.sent) + bytes(CHUNK - 8), isBinary=True)
            self.sent += 1
        if self.left == 0 and self.proto.transport is not None:
            self.proto.transport.unregisterProducer()

    def pauseProducing(self) -> None:
        self.paused = True
        self.pauses += 1

    def stopProducing(self) -> None:
        self.left = 0


class _Quiet:
    """Autobahn's logger for the test's own peers: what is logged is the relay's alone."""

    def __getattr__(self, level: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


class FakeDesktop(WebSocketServerProtocol):
    """Answers like KasmVNC: Basic auth first, echoes the first offered subprotocol, then
    the RFB banner at once; echoes messages; `stream N` streams N messages to the browser."""

    log = _Quiet()

    def __init__(self) -> None:
        super().__init__()
        self.gone: defer.Deferred[int | None] = defer.Deferred()

    def onConnect(self, request: ConnectionRequest) -> str | None:
        backend: FakeContainer = self.factory.container
        backend.requests.append(request)
        if request.headers.get("authorization") != Backend("x", 1, PASSWORD).authorization.decode():
            raise ConnectionDeny(401, "Unauthorized")
        if backend.subprotocol is not None:
            return backend.subprotocol
        return request.protocols[0] if request.protocols else None

    def onOpen(self) -> None:
        self.factory.container.opened.append(self)
        self.sendMessage(BANNER, isBinary=True)
        self.received: list[bytes] = []

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if payload.startswith(b"stream "):
            self.streamer = _Streamer(self, int(payload.split()[1]))
            self.transport.registerProducer(self.streamer, True)
            self.streamer.resumeProducing()
        elif payload.startswith(b"close "):
            code = int(payload.split()[1])
            self.sendClose(code, "bye")
        elif payload.startswith(b"drop"):
            self.transport.abortConnection()
        elif payload.startswith(b"bulk"):
            self.received.append(payload)
        elif payload.startswith(b"fragmented "):
            size = int(payload.split()[1])
            self.sendMessage(bytes(range(256)) * (size // 256), isBinary=True, fragmentSize=1000)
        elif payload.startswith(b"utf8 "):
            self.sendMessage("ü".encode() * int(payload.split()[1]), isBinary=False)
        elif payload.startswith(b"sized "):
            self.sendMessage(bytes(int(payload.split()[1])), isBinary=True)
        else:
            self.sendMessage(payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.close_code = code
        self.factory.container.closed.append(code)
        self.gone.callback(code)


@attr.s(auto_attribs=True)
class FakeContainer:
    """A listening TLS WebSocket server and what it saw."""

    port: Any = None
    subprotocol: str | None = None
    requests: list[ConnectionRequest] = attr.Factory(list)
    opened: list[FakeDesktop] = attr.Factory(list)
    closed: list[int | None] = attr.Factory(list)

    @property
    def backend(self) -> Backend:
        return Backend("127.0.0.1", self.port.getHost().port, PASSWORD)


# -- the browser --------------------------------------------------------------------------


class Browser(WebSocketClientProtocol):
    """Collects what arrives and how the connection ended."""

    log = _Quiet()

    def __init__(self) -> None:
        super().__init__()
        self.messages: defer.DeferredQueue[tuple[bytes, bool]] = defer.DeferredQueue()
        self.opened: defer.Deferred[Browser] = defer.Deferred()
        self.closed: defer.Deferred[tuple[int | None, str | None]] = defer.Deferred()
        self.received_bytes = 0

    def onOpen(self) -> None:
        self.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.received_bytes += len(payload)
        self.messages.put((payload, isBinary))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.opened.called:
            self.opened.errback(RuntimeError(getattr(self, "http_status_line", None) or reason))
        self.closed.callback((code, reason))

    @property
    def status(self) -> int | None:
        line = getattr(self, "http_status_line", None)
        return int(line.split()[1]) if line else None


@attr.s(auto_attribs=True)
class Relay:
    """The bridge factory behind a twisted.web Site, plus the ports and peers to tidy up."""

    factory: DesktopBridgeFactory
    container: FakeContainer
    port: Any
    listeners: list[Any]
    browsers: list[Browser] = attr.Factory(list)
    resolved: list[ConnectionRequest] = attr.Factory(list)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port.getHost().port}/desktop/s1/websockify"

    async def browser(
        self, *, protocols: list[str] | None = None, headers: dict[str, str] | None = None, expect_open: bool = True
    ) -> Browser:
        factory = WebSocketClientFactory(
            self.url,
            origin="http://127.0.0.1",
            protocols=protocols if protocols is not None else ["binary"],
            headers=headers or {},
        )
        factory.setProtocolOptions(maxFramePayloadSize=0, maxMessagePayloadSize=0, autoPingInterval=0)
        proto = Browser()
        proto.factory = factory
        self.browsers.append(proto)
        port = self.port.getHost().port
        await connectProtocol(TCP4ClientEndpoint(_reactor(), "127.0.0.1", port), proto)
        if expect_open:
            await proto.opened
        else:
            proto.opened.addErrback(lambda _: None)
        return proto

    async def tidy(self) -> None:
        for browser in self.browsers:
            if browser.state != browser.STATE_CLOSED:
                browser.dropConnection(abort=True)
            await browser.closed
        await self.factory.close_all()
        for desktop in self.container.opened:
            await desktop.gone
        for listener in self.listeners:
            await listener.stopListening()
        # Let TLS transports flush their last small writes.
        await _sleep(0)


@pytest.fixture
def relay_maker(container_cert: PrivateCertificate) -> Callable[..., defer.Deferred[Relay]]:
    made: list[Relay] = []

    async def make(
        resolve: Callable[[ConnectionRequest], Any] | None = None,
        *,
        listen: bool = True,
        subprotocol: str | None = None,
        max_message_size: int = MAX_MESSAGE,
        open_timeout: float = 5,
        on_input: Callable[[str], None] | None = None,
        listener: Any = None,
        metrics: RelayMetrics | None = None,
        resumable: bool = False,
    ) -> Relay:
        reactor = _reactor()
        container = FakeContainer(subprotocol=subprotocol)
        listeners = []
        backend_factory = WebSocketServerFactory("wss://127.0.0.1")
        backend_factory.protocol = FakeDesktop
        backend_factory.container = container
        backend_factory.setProtocolOptions(maxFramePayloadSize=0, maxMessagePayloadSize=0)
        # KasmVNC's and websockify's OpenSSL servers offer session resumption; Twisted's default does not.
        options = (
            CertificateOptions(
                privateKey=container_cert.privateKey.original, certificate=container_cert.original,
                enableSessions=True, enableSessionTickets=True,
            )
            if resumable else container_cert.options()
        )
        container.port = reactor.listenSSL(0, backend_factory, options, interface="127.0.0.1")
        listeners.append(container.port)
        target = BridgeTarget(container.backend, "s1", "pupil")
        if not listen:
            # A port nothing listens on: take one, then free it.
            await container.port.stopListening()
            listeners.remove(container.port)

        def default_resolve(request: ConnectionRequest) -> defer.Deferred[BridgeTarget]:
            relay.resolved.append(request)
            return defer.succeed(target)

        factory = DesktopBridgeFactory(
            resolve or default_resolve,
            reactor=reactor,
            url="ws://127.0.0.1:8080",
            max_message_size=max_message_size,
            ping_interval=30,
            open_timeout=open_timeout,
            **({"on_input": on_input} if on_input is not None else {}),
            **({"listener": listener} if listener is not None else {}),
            metrics=metrics,
        )
        desktop = Resource()
        session = Resource()
        desktop.putChild(b"s1", session)
        session.putChild(b"websockify", WebSocketResource(factory))
        root = Resource()
        root.putChild(b"desktop", desktop)
        port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
        listeners.append(port)
        relay = Relay(factory, container, port, listeners)
        made.append(relay)
        return relay

    yield lambda *a, **kw: defer.Deferred.fromCoroutine(make(*a, **kw))
    for relay in made:
        pytest_twisted.blockon(defer.Deferred.fromCoroutine(relay.tidy()))


# -- tests --------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_banner_sent_on_open_reaches_the_browser_first_and_messages_copy_both_ways(relay_maker):
    relay = await relay_maker()
    browser = await relay.browser()
    assert await browser.messages.get() == (BANNER, True)
    browser.sendMessage(b"\x00\x01binary", isBinary=True)
    assert await browser.messages.get() == (b"\x00\x01binary", True)
    browser.sendMessage("text ü".encode(), isBinary=False)
    assert await browser.messages.get() == ("text ü".encode(), False)
    (bridge,) = relay.factory.bridges_for_session("s1")
    assert bridge.bytes_to_container == 8 + len("text ü".encode())


@pytest_twisted.ensureDeferred
async def test_bridge_metrics_count_open_bridges_bytes_each_way_and_the_close_code(relay_maker):
    metrics = RelayMetrics()
    relay = await relay_maker(metrics=metrics)
    value = metrics.registry.get_sample_value
    browser = await relay.browser()
    assert await browser.messages.get() == (BANNER, True)
    browser.sendMessage(b"\x00\x01binary", isBinary=True)
    assert await browser.messages.get() == (b"\x00\x01binary", True)
    assert value("desktop_relay_bridges_open") == 1
    relay.factory.count_bytes()  # the periodic count, for a bridge still open
    assert value("desktop_relay_bridge_bytes_total", {"direction": "to_container"}) == 8
    (bridge,) = relay.factory.bridges_for_session("s1")
    browser.sendClose(4321, "tab closed")
    await browser.closed
    await bridge.when_gone()
    assert value("desktop_relay_bridges_open") == 0
    assert value("desktop_relay_bridge_closes_total", {"code": "4321"}) == 1
    # Counted once: what the periodic count took is not counted again at the close.
    assert value("desktop_relay_bridge_bytes_total", {"direction": "to_container"}) == 8
    assert value("desktop_relay_bridge_bytes_total", {"direction": "to_browser"}) == len(BANNER) + 8


@pytest_twisted.ensureDeferred
async def test_subprotocol_chosen_by_the_container_reaches_the_browser(relay_maker):
    relay = await relay_maker(subprotocol="base64")
    browser = await relay.browser(protocols=["binary", "base64"])
    assert browser.websocket_protocol_in_use == "base64"
    assert relay.container.requests[0].protocols == ["binary", "base64"]


@pytest_twisted.ensureDeferred
async def test_no_subprotocol_from_the_container_means_none_for_the_browser(relay_maker):
    relay = await relay_maker()
    browser = await relay.browser(protocols=[])
    assert browser.websocket_protocol_in_use is None


@pytest_twisted.ensureDeferred
async def test_container_gets_relay_authorization_and_origin_but_no_browser_credentials(relay_maker):
    relay = await relay_maker()
    await relay.browser(headers={"Cookie": "relay_session=abc", "Authorization": "Basic YnJvd3Nlcg=="})
    (seen,) = relay.container.requests
    assert seen.headers["authorization"] == relay.container.backend.authorization.decode()
    assert seen.origin == "http://127.0.0.1"
    assert "cookie" not in seen.headers
    assert "proxy-authorization" not in seen.headers
    # The resolver did see the browser's cookie: it needs it.
    assert relay.resolved[0].headers["cookie"] == "relay_session=abc"


@pytest.mark.parametrize("status", [401, 403, 404])
@pytest_twisted.ensureDeferred
async def test_resolver_refusal_becomes_that_http_status_without_touching_the_container(relay_maker, status):
    def refuse(request: ConnectionRequest) -> defer.Deferred[BridgeTarget]:
        return defer.fail(ConnectionDeny(status, "not yours\r\nX-Injected: 1"))

    relay = await relay_maker(refuse)
    browser = await relay.browser(expect_open=False)
    await browser.closed
    assert browser.status == status
    assert "X-Injected" not in browser.http_response_data.decode().split("\r\n", 1)[1]
    assert relay.container.requests == []
    assert relay.factory.bridge_count == 0


@pytest_twisted.ensureDeferred
async def test_resolver_crash_is_logged_and_answered_500(relay_maker, fail_on_logged_errors):
    def crash(request: ConnectionRequest) -> BridgeTarget:
        raise KeyError("bug")

    relay = await relay_maker(crash)
    browser = await relay.browser(expect_open=False)
    await browser.closed
    assert browser.status == 500
    assert any("resolving the upgrade" in str(e.get("log_format")) for e in fail_on_logged_errors)
    fail_on_logged_errors.clear()


@pytest_twisted.ensureDeferred
async def test_container_refusing_means_502_for_the_browser_not_101(relay_maker, monkeypatch):
    relay = await relay_maker()
    bad = BridgeTarget(Backend("127.0.0.1", relay.container.port.getHost().port, "wrong"), "s1", "pupil")
    relay.factory._resolve = lambda request: bad
    browser = await relay.browser(expect_open=False)
    await browser.closed
    assert browser.status == 502
    assert "401" in browser.http_status_line
    assert relay.factory.bridge_count == 0


@pytest_twisted.ensureDeferred
async def test_an_upgrade_refused_for_its_container_leaves_no_open_bridge_in_the_metrics(relay_maker):
    metrics = RelayMetrics()
    relay = await relay_maker(listen=False, metrics=metrics)
    browser = await relay.browser(expect_open=False)
    await browser.closed
    assert browser.status == 502
    for _ in range(20):
        if metrics.registry.get_sample_value("desktop_relay_bridges_open") == 0:
            break
        await _sleep(0.05)
    assert metrics.registry.get_sample_value("desktop_relay_bridges_open") == 0
    # A refusal is an HTTP answer, not a bridge that closed.
    assert [s for m in metrics.registry.collect() for s in m.samples if s.name.endswith("closes_total")] == []


@pytest_twisted.ensureDeferred
async def test_container_not_listening_means_502(relay_maker):
    relay = await relay_maker(listen=False)
    browser = await relay.browser(expect_open=False)
    await browser.closed
    assert browser.status == 502
    assert relay.factory.bridge_count == 0


@pytest_twisted.ensureDeferred
async def test_container_close_reaches_the_browser_with_its_code(relay_maker):
    relay = await relay_maker()
    browser = await relay.browser()
    browser.sendMessage(b"close 4000", isBinary=True)
    code, reason = await browser.closed
    assert (code, reason) == (CLOSE_SESSION_STOPPED, "bye")


@pytest_twisted.ensureDeferred
async def test_container_dropping_tcp_means_1011_for_the_browser(relay_maker):
    relay = await relay_maker()
    relay.factory.container_gone_grace = 0.05
    browser = await relay.browser()
    browser.sendMessage(b"drop", isBinary=True)
    code, reason = await browser.closed
    assert (code, reason) == (CLOSE_CONTAINER_GONE, "desktop container went away")
    await relay.factory.close_all()
    assert relay.factory.bridge_count == 0


@pytest_twisted.ensureDeferred
async def test_container_vanishing_waits_for_the_session_end_to_tell_the_browser_why(relay_maker):
    relay = await relay_maker()
    browser = await relay.browser()
    browser.sendMessage(b"drop", isBinary=True)
    (desktop,) = relay.container.opened
    await desktop.gone
    await _sleep(0.2)  # the bridge has seen its container go, and holds the browser
    assert not browser.closed.called
    why = "The desktop crashed or was killed (exit code 137)."
    assert relay.factory.close_session("s1", CLOSE_SESSION_STOPPED, why) == 1
    assert await browser.closed == (CLOSE_SESSION_STOPPED, why)
    assert relay.factory.bridge_count == 0


@pytest_twisted.ensureDeferred
async def test_browser_close_closes_the_container_with_its_code(relay_maker):
    relay = await relay_maker()
    browser = await relay.browser()
    browser.sendClose(4321, "tab closed")
    await browser.closed
    (desktop,) = relay.container.opened
    assert await desktop.gone == 4321


@pytest_twisted.ensureDeferred
async def test_browser_vanishing_closes_the_container_going_away(relay_maker):
    relay = await relay_maker()
    browser = await relay.browser()
    browser.transport.abortConnection()
    await browser.closed
    (desktop,) = relay.container.opened
    assert await desktop.gone == CLOSE_GOING_AWAY
    await relay.factory.close_all()
    assert relay.factory.bridge_count == 0


@pytest_twisted.ensureDeferred
async def test_close_session_user_and_all(relay_maker):
    relay = await relay_maker()
    first, second = await relay.browser(), await relay.browser()
    assert len(relay.factory.bridges_for_session("s1")) == 2
    assert relay.factory.close_session("other", CLOSE_SESSION_STOPPED, "stopped") == 0
    assert relay.factory.close_user("pupil", CLOSE_SIGNED_OUT, "signed out") == 2
    assert await first.closed == (CLOSE_SIGNED_OUT, "signed out")
    assert await second.closed == (CLOSE_SIGNED_OUT, "signed out")
    third = await relay.browser()
    assert relay.factory.close_session("s1", CLOSE_SESSION_STOPPED, "stopped") == 1
    assert await third.closed == (CLOSE_SESSION_STOPPED, "stopped")
    fourth = await relay.browser()
    await relay.factory.close_all()
    assert (await fourth.closed)[0] == CLOSE_GOING_AWAY
    assert relay.factory.bridge_count == 0
    codes = await defer.gatherResults([d.gone for d in relay.container.opened])
    assert codes == [CLOSE_SIGNED_OUT, CLOSE_SIGNED_OUT, CLOSE_SESSION_STOPPED, CLOSE_GOING_AWAY]


@pytest_twisted.ensureDeferred
async def test_oversize_message_from_the_browser_is_refused(relay_maker):
    relay = await relay_maker(max_message_size=4096)
    browser = await relay.browser()
    browser.sendMessage(b"bulk" + bytes(8192), isBinary=True)
    code, _ = await browser.closed
    assert code in (1009, 1000)  # 1009 sent by the relay; Autobahn reports its echo's code
    assert browser.localCloseCode is None or browser.remoteCloseCode == 1009
    (desktop,) = relay.container.opened
    await desktop.gone
    assert desktop.received == []


@pytest_twisted.ensureDeferred
async def test_slow_browser_pauses_the_container_and_relay_memory_stays_bounded(relay_maker):
    relay = await relay_maker()
    browser = await relay.browser()
    assert await browser.messages.get() == (BANNER, True)
    # The browser stops reading; the container streams 40 MiB as fast as it is allowed to.
    browser.transport.pauseProducing()
    total = 640
    browser.sendMessage(b"stream %d" % total, isBinary=True)
    (desktop,) = relay.container.opened
    (bridge,) = relay.factory.bridges_for_session("s1")
    for _ in range(100):
        await _sleep(0.05)
        if getattr(desktop, "streamer", None) and desktop.streamer.paused:
            break
    streamer = desktop.streamer
    # Wait until the whole path is full and everything stands still.
    last = -1
    while streamer.sent != last:
        last = streamer.sent
        await _sleep(0.2)
    assert streamer.paused and streamer.left > 0, "the container was never held back"
    assert bridge.paused_count[0] >= 1, "the relay never paused reading from the container"
    relay_out = bridge.transport
    buffered = len(relay_out.dataBuffer) - relay_out.offset + relay_out._tempDataLen
    assert buffered < 4 * CHUNK, f"relay holds {buffered} bytes for the browser"
    # Reading again, the browser gets every message, in order.
    browser.transport.resumeProducing()
    for n in range(total):
        payload, _ = await browser.messages.get()
        assert struct.unpack("!Q", payload[:8])[0] == n
    assert bridge.bytes_to_browser == len(BANNER) + total * CHUNK


@pytest_twisted.ensureDeferred
async def test_slow_container_pauses_the_browser(relay_maker):
    relay = await relay_maker()
    browser = await relay.browser()
    (desktop,) = relay.container.opened
    (bridge,) = relay.factory.bridges_for_session("s1")
    desktop.transport.pauseProducing()

    streamer = _Streamer(browser, 10_000)
    browser.sendMessage = _bulk_sender(browser.sendMessage)
    browser.transport.registerProducer(streamer, True)
    streamer.resumeProducing()
    last = -1
    while streamer.sent != last:
        last = streamer.sent
        await _sleep(0.2)
    assert streamer.paused and streamer.left > 0
    assert bridge.paused_count[1] >= 1
    container_out = relay.factory.bridges_for_session("s1")
    assert container_out
    tls = bridge._container.transport
    tcp = tls.transport
    buffered = len(tcp.dataBuffer) - tcp.offset + tcp._tempDataLen + sum(map(len, tls._appSendBuffer))
    assert buffered < 4 * CHUNK, f"relay holds {buffered} bytes for the container"
    streamer.stopProducing()
    browser.transport.unregisterProducer()
    desktop.transport.resumeProducing()


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 300_000])
@pytest_twisted.ensureDeferred
async def test_binary_messages_of_every_length_encoding_reach_the_browser_intact(relay_maker, size):
    relay = await relay_maker()
    browser = await relay.browser()
    assert await browser.messages.get() == (BANNER, True)
    browser.sendMessage(b"sized %d" % size, isBinary=True)
    browser.sendMessage(b"after", isBinary=True)
    assert await browser.messages.get() == (bytes(size), True)
    assert await browser.messages.get() == (b"after", True)
    (bridge,) = relay.factory.bridges_for_session("s1")
    assert bridge.bytes_to_browser == len(BANNER) + size + len(b"after")


@pytest_twisted.ensureDeferred
async def test_container_frames_pass_to_the_browser_without_being_reassembled(relay_maker, monkeypatch):
    relay = await relay_maker()
    browser = await relay.browser()
    assert await browser.messages.get() == (BANNER, True)
    (bridge,) = relay.factory.bridges_for_session("s1")
    resent: list[bytes] = []
    monkeypatch.setattr(bridge, "sendMessage", lambda payload, isBinary=False: resent.append(payload))
    browser.sendMessage(b"stream 20", isBinary=True)
    for n in range(20):
        payload, is_binary = await browser.messages.get()
        assert is_binary and struct.unpack("!Q", payload[:8])[0] == n and len(payload) == CHUNK
    assert resent == []


@pytest_twisted.ensureDeferred
async def test_fragmented_and_text_messages_from_the_container_still_arrive_whole(relay_maker):
    relay = await relay_maker()
    browser = await relay.browser()
    assert await browser.messages.get() == (BANNER, True)
    browser.sendMessage(b"fragmented 5120", isBinary=True)
    browser.sendMessage(b"utf8 3", isBinary=True)
    browser.sendMessage(b"sized 10", isBinary=True)
    assert await browser.messages.get() == (bytes(range(256)) * 20, True)
    assert await browser.messages.get() == ("üüü".encode(), False)
    assert await browser.messages.get() == (bytes(10), True)


@pytest_twisted.ensureDeferred
async def test_oversize_message_from_the_container_is_refused_and_never_reaches_the_browser(relay_maker):
    relay = await relay_maker(max_message_size=4096)
    browser = await relay.browser()
    assert await browser.messages.get() == (BANNER, True)
    browser.sendMessage(b"sized 8192", isBinary=True)
    (desktop,) = relay.container.opened
    assert await desktop.gone == 1009
    # The browser hears the code the container answered with (Autobahn's 1000).
    code, _ = await browser.closed
    assert code in (1009, 1000)
    assert browser.messages.pending == []


# -- input activity -------------------------------------------------------------------------

RFB_HANDSHAKE = [BANNER, b"\x01", b"\x01"]  # version, security type None, ClientInit
FBUR = bytes.fromhex("030100000000050002d0")
KEY_EVENT = bytes.fromhex("0401000000000061")
POINTER_EVENT = bytes.fromhex("050000100010")


async def _through(browser: Browser, payload: bytes) -> None:
    """Send ``payload`` and wait for the container's echo: it has passed the whole bridge."""
    browser.sendMessage(payload, isBinary=True)
    assert await browser.messages.get() == (payload, True)


@pytest_twisted.ensureDeferred
async def test_input_from_the_browser_is_reported_and_update_requests_are_not(relay_maker):
    seen: list[str] = []
    relay = await relay_maker(on_input=seen.append)
    browser = await relay.browser()
    assert await browser.messages.get() == (BANNER, True)
    for payload in [*RFB_HANDSHAKE, FBUR, FBUR]:
        await _through(browser, payload)
    assert seen == []
    await _through(browser, KEY_EVENT)
    assert seen == ["s1"]
    await _through(browser, FBUR + POINTER_EVENT)
    assert seen == ["s1", "s1"]
    # The same pointer position again is not a person; nor are more update requests.
    await _through(browser, POINTER_EVENT)
    await _through(browser, FBUR)
    assert seen == ["s1", "s1"]


@pytest_twisted.ensureDeferred
async def test_unknown_message_counts_as_input_from_then_on_and_is_logged_once(relay_maker):
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        seen: list[str] = []
        relay = await relay_maker(on_input=seen.append)
        browser = await relay.browser()
        assert await browser.messages.get() == (BANNER, True)
        for payload in RFB_HANDSHAKE:
            await _through(browser, payload)
        await _through(browser, b"\x07unknown")
        await _through(browser, FBUR)
        await _through(browser, FBUR)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert seen == ["s1", "s1", "s1"]
    told = [e for e in events if "idle detection off" in e.get("log_format", "")]
    assert len(told) == 1
    assert told[0]["log_level"] == LogLevel.warn and told[0]["session"] == "s1"
    assert "type 7" in told[0]["why"]


@pytest_twisted.ensureDeferred
async def test_text_message_from_the_browser_stops_classifying(relay_maker):
    seen: list[str] = []
    relay = await relay_maker(on_input=seen.append)
    browser = await relay.browser()
    assert await browser.messages.get() == (BANNER, True)
    for payload in RFB_HANDSHAKE:
        await _through(browser, payload)
    browser.sendMessage(b"UkZC", isBinary=False)
    assert await browser.messages.get() == (b"UkZC", False)
    await _through(browser, FBUR)
    assert seen == ["s1", "s1"]


@pytest_twisted.ensureDeferred
async def test_failing_input_listener_is_logged_and_the_desktop_keeps_working(relay_maker, fail_on_logged_errors):
    def broken(session_id: str) -> None:
        raise RuntimeError("store gone")

    relay = await relay_maker(on_input=broken)
    browser = await relay.browser()
    assert await browser.messages.get() == (BANNER, True)
    for payload in [*RFB_HANDSHAKE, KEY_EVENT, KEY_EVENT]:
        await _through(browser, payload)
    failures = [e for e in fail_on_logged_errors if "recording input" in str(e.get("log_format"))]
    assert len(failures) == 2
    fail_on_logged_errors.clear()


@pytest_twisted.ensureDeferred
async def test_bridge_without_an_input_listener_still_classifies_quietly(relay_maker):
    relay = await relay_maker()
    browser = await relay.browser()
    assert await browser.messages.get() == (BANNER, True)
    for payload in [*RFB_HANDSHAKE, KEY_EVENT]:
        await _through(browser, payload)


def _bulk_sender(send: Callable[..., None]) -> Callable[..., None]:
    def bulk(payload: bytes, isBinary: bool = False) -> None:
        send(b"bulk" + payload[4:], isBinary=isBinary)

    return bulk


class Listener:
    """Keeps what a bridge told about its opening and closing."""

    def __init__(self, broken: bool = False) -> None:
        self.told: list[tuple[str, Any]] = []
        self.broken = broken

    def bridge_opened(self, target: BridgeTarget) -> None:
        self.told.append(("opened", target))
        if self.broken:
            raise RuntimeError("audit gone")

    def bridge_closed(self, target: BridgeTarget, closed: BridgeClosed) -> None:
        self.told.append(("closed", closed))
        if self.broken:
            raise RuntimeError("audit gone")


@pytest_twisted.ensureDeferred
async def test_listener_hears_the_open_and_the_close_with_both_codes_and_the_bytes(relay_maker):
    listener = Listener()
    relay = await relay_maker(listener=listener)
    browser = await relay.browser()
    assert await browser.messages.get() == (BANNER, True)
    assert [kind for kind, _ in listener.told] == ["opened"] and listener.told[0][1].session_id == "s1"
    browser.sendClose(4321, "tab closed")
    await browser.closed
    (desktop,) = relay.container.opened
    await desktop.gone
    await relay.factory.close_all()
    kind, closed = listener.told[-1]
    assert kind == "closed" and len(listener.told) == 2
    assert closed.browser_code == 4321 and closed.bytes_to_browser == len(BANNER)
    assert closed.audit_detail() == (f"browser_code=4321 container_code={closed.container_code} "
                                     f"bytes_to_browser={len(BANNER)} bytes_to_container=0")


@pytest_twisted.ensureDeferred
async def test_refused_upgrade_tells_the_listener_nothing(relay_maker):
    listener = Listener()

    def refuse(request: ConnectionRequest) -> defer.Deferred[BridgeTarget]:
        return defer.fail(ConnectionDeny(403, "no"))

    relay = await relay_maker(refuse, listener=listener)
    browser = await relay.browser(expect_open=False)
    await browser.closed
    assert listener.told == []


@pytest_twisted.ensureDeferred
async def test_failing_bridge_listener_is_logged_and_the_desktop_keeps_working(relay_maker, fail_on_logged_errors):
    relay = await relay_maker(listener=Listener(broken=True))
    browser = await relay.browser()
    assert await browser.messages.get() == (BANNER, True)
    await _through(browser, RFB_HANDSHAKE[0])
    browser.sendClose(1000)
    await browser.closed
    (desktop,) = relay.container.opened
    await desktop.gone
    await relay.factory.close_all()
    failures = [e for e in fail_on_logged_errors if "telling that the bridge" in str(e.get("log_format"))]
    assert len(failures) == 2
    fail_on_logged_errors.clear()


def _logged_during() -> tuple[list[dict], Callable[[], None]]:
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    return events, lambda: globalLogPublisher.removeObserver(events.append)


def _shown(events: list[dict]) -> list[dict]:
    """What the relay's admin sees: events at info and above, Autobahn's included (the test's
    browser and container say nothing: see _Quiet; the browser's connect factory is skipped)."""
    return [
        e for e in events
        if e.get("log_level") is not None and e["log_level"] >= LogLevel.info
        and "OneShotFactory" not in e.get("log_namespace", "")
    ]


async def _refused_while_logging(relay) -> tuple:
    """A browser's upgrade that the relay refuses, and every event logged until it closed."""
    events, stop = _logged_during()
    try:
        browser = await relay.browser(expect_open=False)
        await browser.closed
        await _sleep(0.05)
    finally:
        stop()
    return browser, events


@pytest_twisted.ensureDeferred
async def test_upgrade_refused_by_the_resolver_is_logged_once_with_session_user_status_and_reason(relay_maker):
    def refuse(request: ConnectionRequest) -> defer.Deferred[BridgeTarget]:
        return defer.fail(UpgradeRefused(403, "Desktop not allowed", session="s1", user="pupil", why="not allowed"))

    relay = await relay_maker(refuse)
    browser, events = await _refused_while_logging(relay)
    assert browser.status == 403
    [line] = _shown(events)
    assert (line["session"], line["user"], line["status"], line["reason"]) == ("s1", "pupil", 403, "not allowed")
    assert line["log_level"] == LogLevel.info


@pytest_twisted.ensureDeferred
async def test_upgrade_refused_by_the_container_is_logged_once_as_a_warning(relay_maker):
    relay = await relay_maker()
    relay.factory._resolve = lambda request: BridgeTarget(
        Backend("127.0.0.1", relay.container.port.getHost().port, "wrong"), "s1", "pupil"
    )
    browser, events = await _refused_while_logging(relay)
    assert browser.status == 502
    [line] = _shown(events)
    assert (line["session"], line["user"], line["status"]) == ("s1", "pupil", 502)
    assert "401" in line["reason"] and line["log_level"] == LogLevel.warn


def _resumed(bridge: Any) -> bool:
    return bool(_openssl.SSL_session_reused(bridge._container.transport.getHandle()._ssl))


@pytest_twisted.ensureDeferred
async def test_next_bridge_to_a_container_resumes_its_tls_session(relay_maker):
    relay = await relay_maker(resumable=True)
    first = await relay.browser()
    [bridge] = relay.factory.bridges_for_session("s1")
    second = await relay.browser()
    [newer] = relay.factory.bridges_for_session("s1") - {bridge}
    assert (_resumed(bridge), _resumed(newer)) == (False, True)
    # The container still checked the password of the resumed connection, and both work.
    assert len(relay.container.opened) == 2
    for browser in (first, second):
        assert await browser.messages.get() == (BANNER, True)
        browser.sendMessage(b"hello", isBinary=True)
        assert await browser.messages.get() == (b"hello", True)


@pytest_twisted.ensureDeferred
async def test_a_container_that_offers_no_resumption_gets_full_handshakes(relay_maker):
    relay = await relay_maker()
    await relay.browser()
    await relay.browser()
    assert [_resumed(b) for b in relay.factory.bridges_for_session("s1")] == [False, False]


@pytest_twisted.ensureDeferred
async def test_a_tls_session_is_never_offered_to_another_container_address(relay_maker):
    relay = await relay_maker(resumable=True)
    await relay.browser()
    other = await relay_maker(resumable=True)
    other.factory.container_tls = relay.factory.container_tls
    await other.browser()
    [bridge] = other.factory.bridges_for_session("s1")
    assert not _resumed(bridge)


@pytest_twisted.ensureDeferred
async def test_a_looks_input_never_reaches_the_container_until_control_and_never_counts_as_activity(relay_maker):
    seen: list[str] = []
    made: list[Any] = []

    def resolve_look(request: ConnectionRequest) -> defer.Deferred[BridgeTarget]:
        return defer.succeed(BridgeTarget(made[0].container.backend, "s1", "tina", looking_at="pupil",
                                          viewer_name="Tina"))

    relay = await relay_maker(resolve_look, on_input=seen.append)
    made.append(relay)
    browser = await relay.browser()
    assert await browser.messages.get() == (BANNER, True)
    # Asking for the screen to itself: the container gets the shared flag instead.
    browser.sendMessage(BANNER, isBinary=True)
    assert await browser.messages.get() == (BANNER, True)
    await _through(browser, b"\x01")
    browser.sendMessage(b"\x00", isBinary=True)
    assert await browser.messages.get() == (b"\x01", True)
    # Input inside a message is cut out; what is left reaches the container byte for byte.
    browser.sendMessage(KEY_EVENT + FBUR + POINTER_EVENT, isBinary=True)
    assert await browser.messages.get() == (FBUR, True)
    (bridge,) = relay.factory.bridges_for_session("s1")
    bridge.control = True
    await _through(browser, KEY_EVENT)
    bridge.control = False
    browser.sendMessage(KEY_EVENT + FBUR, isBinary=True)
    assert await browser.messages.get() == (FBUR, True)
    assert seen == []
    # A stream the filter cannot follow closes the look.
    browser.sendMessage(b"\x63\x00", isBinary=True)
    code, _reason = await browser.closed
    assert code == 1008
