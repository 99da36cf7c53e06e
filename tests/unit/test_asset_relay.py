"""The asset relay through a real Klein app and Site, against a real TLS desktop stand-in, all on
loopback sockets: headers both ways, conditional and range requests, failures, flow control, and
the client files it answers from memory."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_twisted
from klein import Klein
from klein.interfaces import IKleinRequest
from tls_certs import self_signed
from treq.client import HTTPClient
from twisted.internet import endpoints, ssl
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.web import http, server, static
from twisted.web.client import Agent, HTTPConnectionPool, ResponseFailed
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource

from desktop_relay.backend import Backend
from desktop_relay.relay.assets import AssetRelay
from desktop_relay.relay.client_cache import ClientFileCache
from desktop_relay.relay.client_warmup import ClientWarmup

PASSWORD = "container-secret"
APP_JS = bytes(range(256)) * 40
BIG_SIZE = 32 * 1024 * 1024
CHUNK = bytes(range(256)) * 256


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def _within(d: Deferred, seconds: float = 5) -> Deferred:
    return d.addTimeout(seconds, _reactor())


async def _until(condition: Callable[[], bool], seconds: float = 5) -> None:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await deferLater(_reactor(), 0.01, lambda: None)
    raise AssertionError("condition not reached in time")


# --- servers that know which of their connections are still open ---------------------------


class _TrackingSite(server.Site):
    """A Site that can wait until all its connections are gone (so a test leaves nothing open)."""

    def __init__(self, root: Resource) -> None:
        super().__init__(root)
        self.open: set[Any] = set()
        # No "Starting factory" chatter in the test log.
        self.noisy = False

    def buildProtocol(self, addr: Any) -> Any:
        channel = super().buildProtocol(addr)
        self.open.add(channel)
        lost = channel.connectionLost

        def connection_lost(reason: Failure) -> None:
            self.open.discard(channel)
            lost(reason)

        channel.connectionLost = connection_lost
        return channel


class _Silent(Protocol):
    """Accepts a connection and never says anything (a container stuck in its TLS handshake)."""

    def connectionMade(self) -> None:
        self.factory.open.add(self)  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = ConnectionDone) -> None:  # type: ignore[assignment]
        self.factory.open.discard(self)  # type: ignore[attr-defined]


class _PlainHTTP(_Silent):
    """Speaks plain HTTP at once, as a container without TLS would: no TLS handshake can succeed."""

    def connectionMade(self) -> None:
        super().connectionMade()
        self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


class _SilentFactory(Factory):
    protocol: type[Protocol] = _Silent

    def __init__(self) -> None:
        self.open: set[Any] = set()


# --- the desktop stand-in: KasmVNC-like Basic auth on every request -------------------------


class _Seen:
    def __init__(self, request: server.Request) -> None:
        self.method = request.method
        self.uri = request.uri
        self.headers: Headers = request.requestHeaders.copy()


class _Unauthorized(Resource):
    isLeaf = True

    def render(self, request: server.Request) -> bytes:
        request.setResponseCode(401)
        request.setHeader(b"www-authenticate", b'Basic realm="Websockify"')
        return b"401 Unauthorized"


class _Gate(Resource):
    """Records every request and refuses those without the container's credentials."""

    def __init__(self, authorization: bytes) -> None:
        super().__init__()
        self.authorization = authorization
        self.seen: list[_Seen] = []

    def getChildWithDefault(self, path: bytes, request: server.Request) -> Resource:
        self.seen.append(_Seen(request))
        if request.getHeader(b"authorization") != self.authorization:
            return _Unauthorized()
        return super().getChildWithDefault(path, request)


class _Versioned(Resource):
    isLeaf = True

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"content-type", b"text/plain")
        if request.setETag(b'"v1"') is http.CACHED:
            return b""
        return b"version one"


class _NoisyHeaders(Resource):
    """Answers with headers a browser must not see next to ones it must."""

    isLeaf = True

    def render_GET(self, request: server.Request) -> bytes:
        headers = request.responseHeaders
        headers.setRawHeaders(b"keep-alive", [b"timeout=5"])
        headers.setRawHeaders(b"proxy-authenticate", [b'Basic realm="proxy"'])
        headers.setRawHeaders(b"upgrade", [b"example/1"])
        headers.setRawHeaders(b"set-cookie", [b"kasm=1; Path=/"])
        headers.setRawHeaders(b"www-authenticate", [b'Basic realm="Websockify"'])
        headers.setRawHeaders(b"cross-origin-embedder-policy", [b"require-corp"])
        headers.setRawHeaders(b"x-kept", [b"yes"])
        headers.setRawHeaders(b"content-type", [b"text/plain"])
        return b"noisy"


class _Streamer:
    """A push producer writing a big body as fast as its consumer lets it."""

    def __init__(self, request: server.Request, body: _BigBody) -> None:
        self._request = request
        self._body = body
        self._paused = False
        self._stopped = False

    def pauseProducing(self) -> None:
        self._paused = True
        self._body.pauses += 1

    def resumeProducing(self) -> None:
        self._paused = False
        while not self._paused and not self._stopped and self._body.sent < self._body.size:
            chunk = CHUNK[: self._body.size - self._body.sent]
            self._body.sent += len(chunk)
            self._request.write(chunk)
        if self._body.sent == self._body.size and not self._stopped:
            self._stopped = True
            self._request.unregisterProducer()
            self._request.finish()

    def stopProducing(self) -> None:
        self._stopped = True


class _BigBody(Resource):
    """A big body whose producer records how much of it was written and whether it was cut."""

    isLeaf = True

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.sent = 0
        self.pauses = 0
        self.cut: Deferred[None] = Deferred()

    def render_GET(self, request: server.Request) -> int:
        request.setHeader(b"content-type", b"application/octet-stream")
        request.setHeader(b"content-length", b"%d" % (self.size,))
        request.notifyFinish().addErrback(lambda _: self.cut.callback(None))
        streamer = _Streamer(request, self)
        request.registerProducer(streamer, True)
        streamer.resumeProducing()
        return server.NOT_DONE_YET


class _Dropping(Resource):
    """Sends part of a body without a length, then the container's connection goes."""

    isLeaf = True

    def render_GET(self, request: server.Request) -> int:
        request.write(CHUNK * 4)
        request.channel.loseConnection()
        return server.NOT_DONE_YET


def _certificate_options() -> ssl.CertificateOptions:
    """A fresh self-signed certificate, as a Kasm container makes on every start."""
    key, certificate = self_signed("desktop")
    # pyOpenSSL takes cryptography's objects directly (its own X509/PKey are deprecated).
    return ssl.CertificateOptions(privateKey=key, certificate=certificate)


@pytest.fixture(scope="module")
def tls_options() -> ssl.CertificateOptions:
    return _certificate_options()


class Desktop:
    """The running stand-in: its Backend, what it saw, and its resources."""

    def __init__(self, gate: _Gate, port: int) -> None:
        self.gate = gate
        self.backend = Backend("127.0.0.1", port, PASSWORD)
        self.big = _BigBody(BIG_SIZE)
        gate.putChild(b"big", self.big)

    @property
    def last(self) -> _Seen:
        return self.gate.seen[-1]


async def _close(port: Any, *sites: Any) -> None:
    await maybeDeferred(port.stopListening)
    for site in sites:
        await _until(lambda site=site: not site.open)


@pytest_twisted.async_yield_fixture
async def desktop(tls_options: ssl.CertificateOptions, tmp_path: Any) -> AsyncIterator[Desktop]:
    (tmp_path / "app.js").write_bytes(APP_JS)
    (tmp_path / "a b.txt").write_bytes(b"spaced")
    gate = _Gate(Backend("127.0.0.1", 0, PASSWORD).authorization)
    gate.putChild(b"files", static.File(str(tmp_path)))
    gate.putChild(b"etag", _Versioned())
    gate.putChild(b"noisy", _NoisyHeaders())
    gate.putChild(b"drop", _Dropping())
    site = _TrackingSite(gate)
    endpoint = endpoints.SSL4ServerEndpoint(_reactor(), 0, tls_options, interface="127.0.0.1")
    port = await endpoint.listen(site)
    yield Desktop(gate, port.getHost().port)
    await _close(port, site)


# --- the relay's side: a minimal Klein app like the web layer's ------------------------------


class Front:
    """Routes /desktop/<sid>/... to the relay with the Backend registered for <sid>."""

    app = Klein()

    def __init__(self, relay: AssetRelay) -> None:
        self.relay = relay
        self.backends: dict[str, Backend] = {}
        self.requests: list[server.Request] = []
        self.wrap_producer: Callable[[Any], Any] | None = None

    @app.route("/desktop/<sid>/", branch=True)
    def desktop(self, request: server.Request, sid: str) -> Deferred[None]:
        self.requests.append(request)
        if self.wrap_producer is not None:
            register = request.registerProducer
            wrap = self.wrap_producer
            request.registerProducer = lambda p, s: register(wrap(p), s)  # type: ignore[method-assign]
        rest = "/".join(IKleinRequest(request).branch_segments)
        return self.relay.relay(request, self.backends[sid], rest)


class Running:
    def __init__(self, front: Front, port: int) -> None:
        self.front = front
        self.port = port

    def url(self, rest: str) -> str:
        return f"http://127.0.0.1:{self.port}/desktop/{rest}"


@pytest_twisted.async_yield_fixture
async def relay_site(desktop: Desktop) -> AsyncIterator[Running]:
    reactor = _reactor()
    front = Front(AssetRelay(reactor, connect_timeout=2, response_timeout=1))
    front.backends["good"] = desktop.backend
    site = _TrackingSite(front.app.resource())
    port = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
    yield Running(front, port.getHost().port)
    await _close(port, site)


@pytest.fixture
def browser() -> HTTPClient:
    reactor = _reactor()
    return HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))


@pytest.fixture
def relay_log() -> Any:
    events: list[dict] = []

    def observe(event: dict) -> None:
        if event.get("log_namespace", "").startswith("desktop_relay.relay.assets"):
            events.append(event)

    globalLogPublisher.addObserver(observe)
    yield events
    globalLogPublisher.removeObserver(observe)


class RawBrowser(Protocol):
    """A browser on a plain socket: sends one request, reads (or not), tells how it ended."""

    def __init__(self, request: bytes, *, reading: bool = True) -> None:
        self._request = request
        self._reading = reading
        self.head = b""
        self.body_length = 0
        self.body_hash = hashlib.sha256()
        self.reason: Failure | None = None
        self.ended: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        if not self._reading:
            # A small receive buffer, so the kernel cannot soak up what the relay should hold back.
            self.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            self.transport.pauseProducing()
        self.transport.write(self._request)

    def dataReceived(self, data: bytes) -> None:
        if b"\r\n\r\n" not in self.head:
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            self.head, _, data = self.head.partition(b"\r\n\r\n")
            self.head += b"\r\n\r\n"
        self.body_length += len(data)
        self.body_hash.update(data)

    def connectionLost(self, reason: Failure = ConnectionDone) -> None:  # type: ignore[assignment]
        self.reason = reason
        self.ended.callback(None)

    def read(self) -> None:
        self.transport.resumeProducing()


async def _raw(port: int, request: bytes, *, reading: bool = True) -> RawBrowser:
    endpoint = endpoints.TCP4ClientEndpoint(_reactor(), "127.0.0.1", port)
    return await endpoints.connectProtocol(endpoint, RawBrowser(request, reading=reading))


def _expected_big_hash() -> bytes:
    digest = hashlib.sha256()
    for start in range(0, BIG_SIZE, len(CHUNK)):
        digest.update(CHUNK[: BIG_SIZE - start])
    return digest.digest()


# --- what passes -----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_get_relays_body_and_content_headers(
    relay_site: Running, desktop: Desktop, browser: HTTPClient
) -> None:
    response = await browser.get(relay_site.url("good/files/app.js"))
    assert response.code == 200
    assert await response.content() == APP_JS
    [content_type] = response.headers.getRawHeaders(b"content-type")
    assert content_type.endswith(b"/javascript")
    assert response.headers.getRawHeaders(b"last-modified")
    assert desktop.last.method == b"GET"
    assert desktop.last.uri == b"/files/app.js"


@pytest_twisted.ensureDeferred
async def test_relaying_a_file_writes_no_factory_lines(relay_site: Running, desktop: Desktop) -> None:
    from desktop_relay.backend import _QuietClientFactory

    reactor = _reactor()
    pool = HTTPConnectionPool(reactor, persistent=False)
    pool._factory = _QuietClientFactory  # the test's own browser must not log either
    quiet_browser = HTTPClient(Agent(reactor, pool=pool))
    lines: list[str] = []

    def observe(event: dict) -> None:
        if "factory" in (event.get("log_format") or "").lower():
            lines.append(event["log_format"])

    globalLogPublisher.addObserver(observe)
    try:
        response = await quiet_browser.get(relay_site.url("good/files/app.js"))
        assert await response.content() == APP_JS
    finally:
        globalLogPublisher.removeObserver(observe)
    # "Starting factory ..." / "Stopping factory ..." for each container connection, before.
    assert lines == []


@pytest_twisted.ensureDeferred
async def test_head_gets_the_headers_of_a_get_and_no_body(
    relay_site: Running, desktop: Desktop, browser: HTTPClient
) -> None:
    response = await browser.head(relay_site.url("good/files/app.js"))
    assert response.code == 200
    assert response.headers.getRawHeaders(b"content-length") == [b"%d" % len(APP_JS)]
    assert await response.content() == b""
    # KasmVNC answers GET only.
    assert desktop.last.method == b"GET"


@pytest_twisted.ensureDeferred
async def test_range_request_gets_206_with_those_bytes(
    relay_site: Running, desktop: Desktop, browser: HTTPClient
) -> None:
    response = await browser.get(
        relay_site.url("good/files/app.js"), headers={b"range": [b"bytes=10-19"]}
    )
    assert response.code == 206
    assert response.headers.getRawHeaders(b"content-range") == [b"bytes 10-19/%d" % len(APP_JS)]
    assert await response.content() == APP_JS[10:20]


@pytest_twisted.ensureDeferred
async def test_matching_if_none_match_gets_304(
    relay_site: Running, desktop: Desktop, browser: HTTPClient
) -> None:
    fresh = await browser.get(relay_site.url("good/etag"))
    assert await fresh.content() == b"version one"
    assert fresh.headers.getRawHeaders(b"etag") == [b'"v1"']
    response = await browser.get(relay_site.url("good/etag"), headers={b"if-none-match": [b'"v1"']})
    assert response.code == 304
    assert await response.content() == b""
    assert desktop.last.headers.getRawHeaders(b"if-none-match") == [b'"v1"']


@pytest_twisted.ensureDeferred
async def test_query_string_and_escaped_path_are_forwarded(
    relay_site: Running, desktop: Desktop, browser: HTTPClient
) -> None:
    response = await browser.get(relay_site.url("good/files/a%20b.txt?path=x%2Fy&b=1"))
    assert await response.content() == b"spaced"
    assert desktop.last.uri == b"/files/a%20b.txt?path=x%2Fy&b=1"


@pytest_twisted.ensureDeferred
async def test_relay_sends_its_own_credentials_and_none_of_the_browsers(
    relay_site: Running, desktop: Desktop, browser: HTTPClient
) -> None:
    response = await browser.get(
        relay_site.url("good/files/app.js"),
        headers={
            b"authorization": [b"Basic YnJvd3Nlcjpvd24="],
            b"proxy-authorization": [b"Basic cHJveHk6cGFzcw=="],
            b"cookie": [b"relay_session=abc"],
            b"x-forwarded-for": [b"203.0.113.9"],
            b"accept-language": [b"de"],
            b"user-agent": [b"TestBrowser/1"],
        },
    )
    await response.content()
    seen = desktop.last.headers
    assert seen.getRawHeaders(b"authorization") == [desktop.backend.authorization]
    assert not seen.hasHeader(b"proxy-authorization")
    assert not seen.hasHeader(b"cookie")
    assert not seen.hasHeader(b"x-forwarded-for")
    assert seen.getRawHeaders(b"accept-language") == [b"de"]
    assert seen.getRawHeaders(b"user-agent") == [b"TestBrowser/1"]


@pytest_twisted.ensureDeferred
async def test_browsers_hop_by_hop_headers_stay_behind(relay_site: Running, desktop: Desktop) -> None:
    raw = await _raw(
        relay_site.port,
        b"GET /desktop/good/files/app.js HTTP/1.1\r\nHost: relay\r\n"
        b"Connection: Accept-Language, close\r\nAccept-Language: de\r\nKeep-Alive: 300\r\n"
        b"TE: trailers\r\nUpgrade: example/1\r\nAccept: */*\r\n\r\n",
    )
    await _within(raw.ended)
    assert raw.head.startswith(b"HTTP/1.1 200 ")
    seen = desktop.last.headers
    for name in (b"accept-language", b"keep-alive", b"te", b"upgrade"):
        assert not seen.hasHeader(name), name
    # The relay's own connection to the container is not kept alive.
    assert seen.getRawHeaders(b"connection") == [b"close"]
    assert seen.getRawHeaders(b"accept") == [b"*/*"]


@pytest_twisted.ensureDeferred
async def test_containers_hop_by_hop_cookies_and_auth_challenge_stay_behind(
    relay_site: Running, browser: HTTPClient
) -> None:
    response = await browser.get(relay_site.url("good/noisy"))
    assert await response.content() == b"noisy"
    headers = response.headers
    for name in (
        b"keep-alive",
        b"proxy-authenticate",
        b"upgrade",
        b"set-cookie",
        b"www-authenticate",
    ):
        assert not headers.hasHeader(name), name
    assert headers.getRawHeaders(b"x-kept") == [b"yes"]
    assert headers.getRawHeaders(b"cross-origin-embedder-policy") == [b"require-corp"]


# --- what is refused or fails ----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_post_is_refused_with_405_and_never_reaches_the_container(
    relay_site: Running, desktop: Desktop, browser: HTTPClient
) -> None:
    response = await browser.post(relay_site.url("good/files/app.js"), data=b"x")
    assert response.code == 405
    assert response.headers.getRawHeaders(b"allow") == [b"GET, HEAD"]
    assert desktop.gate.seen == []


@pytest_twisted.ensureDeferred
async def test_container_down_gives_502(
    relay_site: Running, browser: HTTPClient, relay_log: list[dict]
) -> None:
    port = await endpoints.TCP4ServerEndpoint(_reactor(), 0, interface="127.0.0.1").listen(
        Factory.forProtocol(Protocol)
    )
    closed = port.getHost().port
    await port.stopListening()
    relay_site.front.backends["down"] = Backend("127.0.0.1", closed, PASSWORD)
    response = await browser.get(relay_site.url("down/index.html"))
    assert response.code == 502
    assert response.headers.getRawHeaders(b"content-type") == [b"text/plain; charset=utf-8"]
    assert b"not answering" in await response.content()
    [event] = relay_log
    assert event["path"] == "/desktop/down/index.html"


@pytest_twisted.ensureDeferred
async def test_container_without_tls_gives_502(
    relay_site: Running, browser: HTTPClient, relay_log: list[dict]
) -> None:
    plain = _SilentFactory()
    plain.protocol = _PlainHTTP
    port = await endpoints.TCP4ServerEndpoint(_reactor(), 0, interface="127.0.0.1").listen(plain)
    relay_site.front.backends["plain"] = Backend("127.0.0.1", port.getHost().port, PASSWORD)
    response = await browser.get(relay_site.url("plain/index.html"))
    assert response.code == 502
    await response.content()
    [event] = relay_log
    # A TLS failure, reported as it happens, not a timeout.
    assert "SSL" in event["reason"] or "ssl" in event["reason"]
    await _close(port, plain)


@pytest_twisted.ensureDeferred
async def test_container_that_never_answers_gives_502_after_the_timeout(
    relay_site: Running, browser: HTTPClient, relay_log: list[dict]
) -> None:
    silent = _SilentFactory()
    port = await endpoints.TCP4ServerEndpoint(_reactor(), 0, interface="127.0.0.1").listen(silent)
    relay_site.front.backends["silent"] = Backend("127.0.0.1", port.getHost().port, PASSWORD)
    response = await browser.get(relay_site.url("silent/index.html"))
    assert response.code == 502
    await response.content()
    [event] = relay_log
    assert event["reason"] == "no response within 1 s"
    await _close(port, silent)


@pytest_twisted.ensureDeferred
async def test_container_refusing_the_relays_credentials_gives_502_without_a_prompt(
    relay_site: Running,
    desktop: Desktop,
    browser: HTTPClient,
    fail_on_logged_errors: list[dict],
) -> None:
    relay_site.front.backends["wrong"] = Backend("127.0.0.1", desktop.backend.port, "wrong")
    response = await browser.get(relay_site.url("wrong/index.html"))
    assert response.code == 502
    assert not response.headers.hasHeader(b"www-authenticate")
    assert b"credentials" in await response.content()
    [error] = fail_on_logged_errors
    assert error["path"] == "/desktop/wrong/index.html"
    fail_on_logged_errors.clear()


@pytest_twisted.ensureDeferred
async def test_container_dropping_mid_body_aborts_the_browsers_connection(
    relay_site: Running, browser: HTTPClient, relay_log: list[dict]
) -> None:
    response = await browser.get(relay_site.url("good/drop"))
    assert response.code == 200
    with pytest.raises(ResponseFailed):
        await response.content()
    [event] = relay_log
    assert "mid-body" in event["log_format"]
    assert event["path"] == "/desktop/good/drop"


# --- streaming -------------------------------------------------------------------------------


class _CountingProducer:
    """Passes a producer's calls on, counting the pauses."""

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self.pauses = 0

    def pauseProducing(self) -> None:
        self.pauses += 1
        self.producer.pauseProducing()

    def resumeProducing(self) -> None:
        self.producer.resumeProducing()

    def stopProducing(self) -> None:
        self.producer.stopProducing()


@pytest_twisted.ensureDeferred
async def test_browser_that_does_not_read_pauses_the_container_and_memory_stays_bounded(
    relay_site: Running, desktop: Desktop
) -> None:
    counted: list[_CountingProducer] = []

    def wrap(producer: Any) -> _CountingProducer:
        counted.append(_CountingProducer(producer))
        return counted[-1]

    relay_site.front.wrap_producer = wrap
    raw = await _raw(
        relay_site.port,
        b"GET /desktop/good/big HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n",
        reading=False,
    )
    await _until(lambda: bool(relay_site.front.requests))
    front_transport = relay_site.front.requests[-1].channel.transport
    # Wait until the container stops getting its bytes out: everything is full.
    last = -1
    stable = 0
    while stable < 20:
        await deferLater(_reactor(), 0.01, lambda: None)
        stable = stable + 1 if desktop.big.sent == last else 0
        last = desktop.big.sent
    relay_buffered = len(front_transport.dataBuffer) + front_transport._tempDataLen
    assert counted and counted[0].pauses >= 1
    assert relay_buffered < 1024 * 1024
    assert desktop.big.sent < BIG_SIZE // 2
    assert desktop.big.pauses >= 1

    raw.read()
    await _within(raw.ended, 10)
    assert raw.reason is not None and raw.reason.check(ConnectionDone)
    assert b"content-length: 33554432" in raw.head.lower()
    assert raw.body_length == BIG_SIZE
    assert raw.body_hash.digest() == _expected_big_hash()


@pytest_twisted.ensureDeferred
async def test_browser_leaving_mid_body_stops_the_container_quietly(
    relay_site: Running, desktop: Desktop, relay_log: list[dict]
) -> None:
    raw = await _raw(
        relay_site.port,
        b"GET /desktop/good/big HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n",
    )
    await _until(lambda: raw.body_length > 1024 * 1024)
    raw.transport.loseConnection()
    await _within(desktop.big.cut)
    assert desktop.big.sent < BIG_SIZE
    assert [e for e in relay_log if e["log_level"].name != "debug"] == []


@pytest_twisted.ensureDeferred
async def test_browser_leaving_before_the_container_answers_cancels_the_upstream_request(
    relay_site: Running, relay_log: list[dict]
) -> None:
    silent = _SilentFactory()
    port = await endpoints.TCP4ServerEndpoint(_reactor(), 0, interface="127.0.0.1").listen(silent)
    relay_site.front.backends["silent"] = Backend("127.0.0.1", port.getHost().port, PASSWORD)
    # A timeout far beyond the test's patience: only the cancellation can end the upstream request.
    relay_site.front.relay = AssetRelay(_reactor(), response_timeout=60)
    raw = await _raw(
        relay_site.port, b"GET /desktop/silent/index.html HTTP/1.1\r\nHost: relay\r\n\r\n"
    )
    await _until(lambda: bool(silent.open))
    raw.transport.loseConnection()
    await _within(raw.ended)
    await _until(lambda: not silent.open)
    assert [e for e in relay_log if e["log_level"].name != "debug"] == []
    await _close(port, silent)


# --- the client file cache -----------------------------------------------------------------


class CachingFront(Front):
    """Front with the web layer's cache arguments: each session id belongs to a user."""

    app = Klein()

    def __init__(self, relay: AssetRelay) -> None:
        super().__init__(relay)
        self.owners: dict[str, str] = {}

    @app.route("/desktop/<sid>/", branch=True)
    def desktop(self, request: server.Request, sid: str) -> Deferred[None]:
        rest = "/".join(IKleinRequest(request).branch_segments)
        return self.relay.relay(request, self.backends[sid], rest, session_id=sid, user_id=self.owners[sid])


@pytest_twisted.async_yield_fixture
async def caching_site(desktop: Desktop) -> AsyncIterator[Running]:
    reactor = _reactor()
    front = CachingFront(AssetRelay(reactor, connect_timeout=2, response_timeout=1, cache=ClientFileCache()))
    front.backends.update(anna1=desktop.backend, anna2=desktop.backend, bob1=desktop.backend)
    front.owners.update(anna1="anna", anna2="anna", bob1="bob")
    desktop.gate.putChild(b"", static.Data(b"<html>client one</html>", "text/html"))
    site = _TrackingSite(front.app.resource())
    port = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
    yield Running(front, port.getHost().port)
    await _close(port, site)


async def _load(browser: HTTPClient, site: Running, session: str, *files: str) -> list[tuple[int, bytes]]:
    """Load the client of a session as a browser does: the entry document, then its files."""
    entry = await browser.get(site.url(f"{session}/?path=desktop/{session}/websockify"))
    assert entry.code == 200 and b"client" in await entry.content()
    answers = []
    for name in files:
        response = await browser.get(site.url(f"{session}/{name}"))
        answers.append((response.code, await response.content()))
    return answers


def _asked(desktop: Desktop, path: bytes) -> int:
    return sum(1 for seen in desktop.gate.seen if seen.uri == path)


@pytest_twisted.ensureDeferred
async def test_a_users_next_session_gets_the_client_files_from_memory(
    caching_site: Running, desktop: Desktop, browser: HTTPClient
) -> None:
    assert await _load(browser, caching_site, "anna1", "files/app.js") == [(200, APP_JS)]
    response = await browser.get(caching_site.url("anna1/files/app.js"))
    assert await _load(browser, caching_site, "anna2", "files/app.js") == [(200, APP_JS)]
    assert _asked(desktop, b"/files/app.js") == 1
    # Answered as the container answered, with a length of the relay's own.
    [content_type] = response.headers.getRawHeaders(b"content-type")
    assert content_type.endswith(b"/javascript")
    assert response.length == len(APP_JS)
    assert response.headers.getRawHeaders(b"last-modified")
    # The entry document always comes from the container: it names the client build.
    assert _asked(desktop, b"/?path=desktop/anna2/websockify") == 1


@pytest_twisted.ensureDeferred
async def test_files_a_container_served_never_reach_another_users_browser(
    caching_site: Running, desktop: Desktop, browser: HTTPClient
) -> None:
    await _load(browser, caching_site, "anna1", "files/app.js")
    assert await _load(browser, caching_site, "bob1", "files/app.js") == [(200, APP_JS)]
    assert _asked(desktop, b"/files/app.js") == 2


@pytest_twisted.ensureDeferred
async def test_a_new_client_build_starts_with_nothing_cached(
    caching_site: Running, desktop: Desktop, browser: HTTPClient
) -> None:
    await _load(browser, caching_site, "anna1", "files/app.js")
    desktop.gate.putChild(b"", static.Data(b"<html>client two</html>", "text/html"))
    await _load(browser, caching_site, "anna2", "files/app.js")
    assert _asked(desktop, b"/files/app.js") == 2


@pytest_twisted.ensureDeferred
async def test_queries_ranges_and_files_before_the_entry_document_are_always_relayed(
    caching_site: Running, desktop: Desktop, browser: HTTPClient
) -> None:
    # No entry document seen for the session yet: its build is unknown.
    await browser.get(caching_site.url("anna1/files/app.js"))
    await _load(browser, caching_site, "anna1", "files/app.js", "files/app.js?v=1", "files/app.js?v=1")
    for _ in range(2):
        response = await browser.get(caching_site.url("anna1/files/app.js"), headers={"Range": "bytes=0-9"})
        assert response.code == 206 and await response.content() == APP_JS[:10]
    assert _asked(desktop, b"/files/app.js") == 4
    assert _asked(desktop, b"/files/app.js?v=1") == 2


class _VersionedEntry(Resource):
    """An entry document with the validators a client build's web server sends."""

    isLeaf = True

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"content-type", b"text/html")
        request.setHeader(b"etag", b'"client-one"')
        return b"<html>client one</html>"


MODULE = {"Sec-Fetch-Dest": "script", "Sec-Fetch-Mode": "cors"}
CLASSIC = {"Sec-Fetch-Dest": "script", "Sec-Fetch-Mode": "no-cors"}


@pytest_twisted.ensureDeferred
async def test_a_users_next_client_load_is_told_its_modules_at_once(
    caching_site: Running, desktop: Desktop, browser: HTTPClient
) -> None:
    desktop.gate.putChild(b"", _VersionedEntry())
    served = desktop.gate.children[b"files"].path  # type: ignore[attr-defined]
    with open(f"{served}/classic.js", "wb") as f:
        f.write(b"// a classic script")

    async def entry(session: str) -> list[bytes]:
        response = await browser.get(caching_site.url(f"{session}/?path=desktop/{session}/websockify"))
        await response.content()
        return response.headers.getRawHeaders(b"link", [])

    assert await entry("anna1") == []  # nothing seen yet
    for name, fetch in (("files/app.js", MODULE), ("files/classic.js", CLASSIC)):
        await (await browser.get(caching_site.url(f"anna1/{name}"), headers=fetch)).content()
    # The same build for the same user: its module scripts, relative to the document, not the
    # classic script (a module fetch would not match the browser's own request for it).
    assert await entry("anna2") == [b"<files/app.js>; rel=modulepreload"]
    assert await entry("bob1") == []  # another user's browser learns nothing of anna's



@pytest_twisted.ensureDeferred
async def test_a_prestarted_desktops_client_is_fetched_ahead_from_its_own_container(
    caching_site: Running, desktop: Desktop, browser: HTTPClient
) -> None:
    cache = caching_site.front.relay._cache
    assert cache is not None
    warmup = ClientWarmup(_reactor(), cache)
    # A build nobody has loaded: nothing to go by but the entry document.
    assert await warmup.warm("bob1", "bob", desktop.backend) == 0
    assert _asked(desktop, b"/files/app.js") == 0
    await _load(browser, caching_site, "anna1", "files/app.js")
    # bob1 stands for bob's pre-started desktop: its files come from it, the paths from anna's load.
    assert await warmup.warm("bob1", "bob", desktop.backend) == 1
    assert _asked(desktop, b"/files/app.js") == 2
    assert await _load(browser, caching_site, "bob1", "files/app.js") == [(200, APP_JS)]
    assert _asked(desktop, b"/files/app.js") == 2  # bob's browser got it from memory


@pytest_twisted.ensureDeferred
async def test_fetching_ahead_from_a_desktop_that_does_not_answer_keeps_nothing(caching_site: Running) -> None:
    cache = caching_site.front.relay._cache
    assert cache is not None
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    warmup = ClientWarmup(_reactor(), cache, connect_timeout=1)
    assert await warmup.warm("bob1", "bob", Backend("127.0.0.1", port, PASSWORD)) == 0
