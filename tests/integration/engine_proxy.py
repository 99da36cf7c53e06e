"""A unix-socket forwarder between a provisioner and the real Docker engine, which a test can
cut (as if the engine went away) or freeze (as if dockerd were stopped by SIGSTOP) without
touching dockerd itself, on which other people's containers run.

It runs on the reactor; the provisioner's blocking calls run in their threads, so a test can
freeze the engine under a call it is awaiting.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

DOCKER_SOCKET = "/var/run/docker.sock"


class _ClientSide(Protocol):
    """A connection from the provisioner, with its own connection to the engine."""

    def __init__(self, proxy: EngineProxy) -> None:
        self.proxy = proxy
        self.engine: _EngineSide | None = None
        self.pending: list[bytes] = []
        self.gone = False
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.proxy.connections.append(self)
        if self.proxy.is_cut:
            self.proxy.refused += 1
            self.transport.abortConnection()
            return
        if self.proxy.is_frozen:
            self.transport.pauseProducing()
        endpoint = UNIXClientEndpoint(self.proxy.reactor, self.proxy.engine_path)
        factory = Factory.forProtocol(lambda: _EngineSide(self))
        factory.noisy = False
        endpoint.connect(factory).addErrback(lambda _: self.transport.abortConnection())

    def dataReceived(self, data: bytes) -> None:
        if self.engine is None:
            self.pending.append(data)
        else:
            self.engine.transport.write(data)

    def connectionLost(self, reason: Failure) -> None:
        # The engine's side stays open until the engine answers: a stopped dockerd reads what a
        # client sent before giving up, and carries it out when it resumes (the issue saw that
        # with a create); this makes it certain, the worst case on purpose. An idle keep-alive
        # connection's engine side stays open until the proxy stops.
        self.gone = True
        self.lost.callback(None)


class _EngineSide(Protocol):
    """The proxy's connection to the engine on behalf of one client connection."""

    def __init__(self, client: _ClientSide) -> None:
        self.client = client
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        proxy = self.client.proxy
        proxy.connections.append(self)
        if proxy.is_cut or self.client.gone:
            self.transport.abortConnection()
            return
        if proxy.is_frozen:
            self.transport.pauseProducing()
        self.client.engine = self
        for data in self.client.pending:
            self.transport.write(data)
        self.client.pending = []

    def dataReceived(self, data: bytes) -> None:
        if self.client.gone:
            # The engine's answer to a request its client gave up on: nobody to tell.
            self.transport.loseConnection()
        else:
            self.client.transport.write(data)

    def connectionLost(self, reason: Failure) -> None:
        if not self.client.gone:
            self.client.transport.loseConnection()
        self.lost.callback(None)


class EngineProxy:
    """Forwards a socket of its own (`url`) to the engine's; `cut()`/`restore()` and
    `freeze()`/`thaw()` change what gets through."""

    def __init__(self, reactor: Any, engine_path: str = DOCKER_SOCKET) -> None:
        self.reactor = reactor
        self.engine_path = engine_path
        # Unix socket paths are short (108 bytes): pytest's tmp_path may be too long.
        self._directory = Path(tempfile.mkdtemp(prefix="engine-proxy-", dir="/tmp"))
        self.path = self._directory / "docker.sock"
        self.url = f"unix://{self.path}"
        self.is_cut = False
        self.is_frozen = False
        # Connections accepted and closed at once while cut.
        self.refused = 0
        self.connections: list[_ClientSide | _EngineSide] = []
        self._port: IListeningPort | None = None

    def start(self) -> None:
        self._port = self.reactor.listenUNIX(str(self.path), Factory.forProtocol(lambda: _ClientSide(self)))

    def cut(self) -> None:
        """Drop every connection, and every new one at once, as an engine that went away."""
        self.is_cut = True
        for connection in self._open():
            connection.transport.abortConnection()

    def restore(self) -> None:
        """Let connections through again after a cut."""
        self.is_cut = False

    def freeze(self) -> None:
        """Forward nothing either way, accepting new connections: as dockerd under SIGSTOP."""
        self.is_frozen = True
        for connection in self._open():
            connection.transport.pauseProducing()

    def thaw(self) -> None:
        """Forward again everything held back, as dockerd after SIGCONT."""
        self.is_frozen = False
        for connection in self._open():
            connection.transport.resumeProducing()

    async def stop(self) -> None:
        """Stop listening and close every connection; returns when they are all gone."""
        if self._port is not None:
            await self._port.stopListening()
        for connection in self._open():
            connection.transport.abortConnection()
        await DeferredList([c.lost for c in self.connections])
        shutil.rmtree(self._directory, ignore_errors=True)

    def _open(self) -> list[_ClientSide | _EngineSide]:
        return [c for c in self.connections if not c.lost.called]
