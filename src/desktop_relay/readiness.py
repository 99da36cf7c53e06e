"""Whether a desktop container is ready: one bounded, authenticated TLS `GET /` to it.

The Kasm contract has no health check; ready means the web server on port 6901 answers an
authenticated `GET /` with 200. `probe_ready` asks once and answers True or False, never
failing for "not yet" (refused, reset, TLS not up, no answer in time, 401, 5xx): the lifecycle
code calls it repeatedly until its own deadline, checking meanwhile that the container still runs.
"""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL
from twisted.internet import error as net_error
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    TimeoutError,
    ensureDeferred,
)
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseFailed
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent

from .backend import Backend, container_agent

# One probe may take this long (connect, TLS handshake, answer, body) before it counts as "no".
PROBE_TIMEOUT = 2.0

_log = Logger()

# What "not ready yet" looks like from here; anything else is a bug and propagates.
_NOT_READY = (
    net_error.ConnectError,  # refused, no route, connect timeout
    net_error.ConnectionLost,
    net_error.ConnectionDone,
    ResponseFailed,  # includes ResponseNeverReceived and TLS handshake failures
    SSL.Error,
    TimeoutError,
    CancelledError,
)


class ReadinessProbe:
    """`probe_ready` with its agent and clock bound: `probe(backend)` is what lifecycle code
    calls, again and again, until the desktop is ready or its own deadline has passed."""

    def __init__(self, reactor: Any, timeout: float = PROBE_TIMEOUT) -> None:
        self._agent = container_agent(reactor, connect_timeout=timeout)
        self._clock: IReactorTime = reactor
        self._timeout = timeout

    def probe(self, backend: Backend) -> Deferred[bool]:
        """Ask once: True when the desktop answers an authenticated `GET /` with 200."""
        return probe_ready(self._agent, backend, self._clock, self._timeout)


def probe_ready(
    agent: IAgent, backend: Backend, clock: IReactorTime, timeout: float = PROBE_TIMEOUT
) -> Deferred[bool]:
    """Ask the container once whether it serves its web client: True on 200, else False.

    The whole exchange is bounded by `timeout` seconds on `clock`; a probe that runs over is
    cancelled, closing its connection. Failures are logged at debug level only.
    """
    attempt = ensureDeferred(_get_root_status(agent, backend))
    attempt.addTimeout(timeout, clock)

    def answered(status: int) -> bool:
        if status != 200:
            _log.debug("desktop at {backend.port} not ready: HTTP {status}", backend=backend, status=status)
        return status == 200

    def failed(failure: Failure) -> bool:
        reason = failure.trap(*_NOT_READY)
        _log.debug(
            "desktop at {backend.port} not ready: {reason}",
            backend=backend,
            reason=reason.__name__,
        )
        return False

    return attempt.addCallbacks(answered, failed)


async def _get_root_status(agent: IAgent, backend: Backend) -> int:
    response = await agent.request(
        b"GET",
        backend.url("/").encode("ascii"),
        Headers({b"Authorization": [backend.authorization]}),
    )
    # Read the (small) page to its end so the connection closes; only the status matters.
    body = _DiscardBody()
    response.deliverBody(body)
    await body.finished
    return response.code


class _DiscardBody(Protocol):
    """Consumes a response body; `finished` fires when it ended, however it ended.
    Cancelling `finished` (the probe timed out) drops the connection."""

    def __init__(self) -> None:
        self.finished: Deferred[None] = Deferred(lambda _: self._drop())

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self.finished.called:
            self.finished.callback(None)

    def _drop(self) -> None:
        if self.transport is not None:
            # A response body's transport is an IPushProducer.
            self.transport.stopProducing()  # type: ignore[attr-defined]
