"""probe_ready against local TLS servers: only an authenticated 200 means ready, and a probe
never takes longer than its bound."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import attr
import pytest
import pytest_twisted
from OpenSSL import SSL
from tls_certs import self_signed
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IOpenSSLContextFactory
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.policies import WrappingFactory
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import implementer

from desktop_relay.backend import Backend, container_agent
from desktop_relay.readiness import PROBE_TIMEOUT, ReadinessProbe, probe_ready

PASSWORD = "right-password"


@implementer(IOpenSSLContextFactory)
class SelfSignedServerTLS:
    """Server TLS context with a fresh self-signed certificate, as a Kasm container makes."""

    def __init__(self) -> None:
        key, cert = self_signed("desktop")
        self._context = SSL.Context(SSL.TLS_SERVER_METHOD)
        self._context.use_certificate(cert)
        self._context.use_privatekey(key)

    def getContext(self) -> SSL.Context:
        return self._context


class KasmLikeRoot(Resource):
    """`GET /` as KasmVNC answers it: 200 with the right Basic auth, else 401."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        expected = Backend("127.0.0.1", 0, PASSWORD).authorization
        if request.getHeader(b"authorization") != expected:
            request.setResponseCode(401)
            request.setHeader(b"www-authenticate", b'Basic realm="Websockify"')
            return b"401 Unauthorized"
        request.setHeader(b"connection", b"close")
        return b"<html>web client</html>"


class NeverAnswers(Resource):
    """Accepts the request and never responds."""

    isLeaf = True

    def render_GET(self, request: Request) -> object:
        return NOT_DONE_YET


class NeverFinishes(Resource):
    """Answers 200 and starts the page, then stalls."""

    isLeaf = True

    def render_GET(self, request: Request) -> object:
        request.write(b"<html>")
        return NOT_DONE_YET


class TrackingFactory(WrappingFactory):
    """Wraps a server factory and tells when all of its connections are gone."""

    def __init__(self, wrapped: Factory) -> None:
        super().__init__(wrapped)
        self._idle: list[Deferred[None]] = []

    def unregisterProtocol(self, p: Protocol) -> None:
        super().unregisterProtocol(p)
        if not self.protocols:
            waiting, self._idle = self._idle, []
            for d in waiting:
                d.callback(None)

    def all_closed(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if self.protocols:
            self._idle.append(d)
        else:
            d.callback(None)
        return d


class Servers:
    """Local servers on 127.0.0.1 for the probe to talk to; all shut down after the test."""

    def __init__(self) -> None:
        self._running: list[tuple[IListeningPort, TrackingFactory]] = []

    def tls(self, resource: Resource) -> Backend:
        """HTTPS serving `resource`, like a container's port 6901."""
        return self._listen(self._site(resource), tls=True)

    def plain_http(self, resource: Resource) -> Backend:
        """HTTP without TLS: some other service on the port."""
        return self._listen(self._site(resource), tls=False)

    def silent(self) -> Backend:
        """Accepts TCP connections and never says anything, so TLS never comes up."""
        return self._listen(Factory.forProtocol(Protocol), tls=False)

    def _site(self, resource: Resource) -> Site:
        # No idle timeout: it would leave a timer behind for the delayed-call check.
        return Site(resource, timeout=None)

    def _listen(self, server: Factory, tls: bool) -> Backend:
        factory = TrackingFactory(server)
        if tls:
            port = reactor.listenSSL(0, factory, SelfSignedServerTLS(), interface="127.0.0.1")
        else:
            port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self._running.append((port, factory))
        return Backend("127.0.0.1", port.getHost().port, PASSWORD)

    def stop(self) -> None:
        for port, factory in self._running:
            pytest_twisted.blockon(port.stopListening())
            # Bounded, so a probe that leaves its connection open fails instead of hanging.
            pytest_twisted.blockon(factory.all_closed().addTimeout(5, reactor))


@pytest.fixture
def servers() -> Iterator[Servers]:
    running = Servers()
    yield running
    running.stop()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest_twisted.ensureDeferred
async def test_an_authenticated_200_means_ready(servers: Servers) -> None:
    backend = servers.tls(KasmLikeRoot())
    assert await probe_ready(container_agent(reactor, PROBE_TIMEOUT), backend, reactor) is True


@pytest_twisted.ensureDeferred
async def test_a_401_means_not_ready(servers: Servers) -> None:
    backend = attr.evolve(servers.tls(KasmLikeRoot()), password="wrong")
    assert await probe_ready(container_agent(reactor, PROBE_TIMEOUT), backend, reactor) is False


@pytest_twisted.ensureDeferred
async def test_nothing_listening_means_not_ready() -> None:
    backend = Backend("127.0.0.1", closed_port(), PASSWORD)
    assert await probe_ready(container_agent(reactor, PROBE_TIMEOUT), backend, reactor) is False


@pytest_twisted.ensureDeferred
async def test_a_server_that_never_answers_is_given_up_on_within_the_bound(servers: Servers) -> None:
    backend = servers.tls(NeverAnswers())
    began = time.monotonic()
    assert await probe_ready(container_agent(reactor, PROBE_TIMEOUT), backend, reactor, timeout=0.5) is False
    assert time.monotonic() - began < 1.5


@pytest_twisted.ensureDeferred
async def test_a_page_that_never_finishes_is_given_up_on_and_its_connection_dropped(
    servers: Servers,
) -> None:
    # The servers fixture waits for the server's connections to close: the probe must drop it.
    backend = servers.tls(NeverFinishes())
    began = time.monotonic()
    assert await probe_ready(container_agent(reactor, PROBE_TIMEOUT), backend, reactor, timeout=0.5) is False
    assert time.monotonic() - began < 1.5


@pytest_twisted.ensureDeferred
async def test_a_server_whose_tls_never_comes_up_is_given_up_on_within_the_bound(
    servers: Servers,
) -> None:
    backend = servers.silent()
    began = time.monotonic()
    assert await probe_ready(container_agent(reactor, PROBE_TIMEOUT), backend, reactor, timeout=0.5) is False
    assert time.monotonic() - began < 1.5


@pytest_twisted.ensureDeferred
async def test_a_port_without_tls_is_not_ready(servers: Servers) -> None:
    backend = servers.plain_http(KasmLikeRoot())
    assert await probe_ready(container_agent(reactor, PROBE_TIMEOUT), backend, reactor, timeout=0.5) is False


@pytest_twisted.ensureDeferred
async def test_the_bound_probe_answers_like_probe_ready(servers: Servers) -> None:
    backend = servers.tls(KasmLikeRoot())
    probe = ReadinessProbe(reactor, timeout=1).probe
    assert await probe(backend) is True
    assert await probe(attr.evolve(backend, password="wrong")) is False
