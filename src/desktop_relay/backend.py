"""Where a session's container is reached, and how: the value the relay's HTTP and WebSocket
paths connect with, the TLS options for those loopback connections, and the HTTP agent (with the quiet connection
pool the OpenID client shares)."""

from __future__ import annotations

from base64 import b64encode
from typing import Any

import attr
from twisted.internet.ssl import CertificateOptions
from twisted.web.client import Agent, HTTPConnectionPool, _HTTP11ClientFactory
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

CONTAINER_USER = "kasm_user"


@attr.s(frozen=True, auto_attribs=True)
class Backend:
    """One desktop container's web endpoint, with the credentials the relay adds itself."""

    host: str
    port: int
    password: str = attr.ib(repr=False)

    @property
    def authorization(self) -> bytes:
        """The Basic auth header value; never shown to the browser."""
        token = b64encode(f"{CONTAINER_USER}:{self.password}".encode())
        return b"Basic " + token

    def url(self, path: str) -> str:
        return f"https://{self.host}:{self.port}/{path.lstrip('/')}"


def container_tls_options() -> CertificateOptions:
    """TLS client options for talking to a desktop container.

    Kasm containers make a new self-signed certificate on every start, so there is nothing
    to verify against. What protects the link instead: the port is published on 127.0.0.1
    only, and every request carries the container's own random Basic-auth password.
    """
    return CertificateOptions(verify=False)


@implementer(IPolicyForHTTPS)
class ContainerTLSPolicy:
    """treq/Agent policy: container TLS for loopback desktop ports (see container_tls_options)."""

    def __init__(self) -> None:
        self._options = container_tls_options()

    def creatorForNetloc(self, hostname: bytes, port: int) -> CertificateOptions:
        return self._options



class _QuietClientFactory(_HTTP11ClientFactory):
    # Twisted logs "Starting factory"/"Stopping factory" for every connection a noisy factory
    # makes: two info lines per relayed file and readiness probe, a quarter of all log lines.
    noisy = False


def quiet_pool(reactor: Any, *, persistent: bool) -> HTTPConnectionPool:
    """An HTTP connection pool whose connections log nothing when they open and close."""
    pool = HTTPConnectionPool(reactor, persistent=persistent)
    pool._factory = _QuietClientFactory
    return pool


def container_agent(reactor: Any, connect_timeout: float) -> Agent:
    """An HTTP agent for desktop containers: container TLS policy, no connection reuse.

    KasmVNC answers every request with `Connection: close`, so a persistent pool would only hold
    dead connections (and leave their expiry timers on the reactor).
    """
    pool = quiet_pool(reactor, persistent=False)
    return Agent(reactor, contextFactory=ContainerTLSPolicy(), connectTimeout=connect_timeout, pool=pool)
