"""TLS from the relay to its desktop containers: one OpenSSL context for every bridge, and the
last TLS session of each container kept so that the next bridge to it resumes instead of doing
a full handshake.

Security is what :func:`desktop_relay.backend.container_tls_options` says it is (a container's
certificate is self-signed and new on every start, so it is not verified; the port is on
127.0.0.1 and every upgrade carries the container's own random password). Resumption does not
loosen that: a session resumes only with the server that issued it, i.e. the same container
process, and the password is still checked on every upgrade; any other server gets a full
handshake, exactly as without the cache.
"""

from __future__ import annotations

from collections import OrderedDict

from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.protocols.tls import TLSMemoryBIOProtocol
from zope.interface import implementer

from desktop_relay.backend import container_tls_options

#: Containers whose last session is kept (a session is about 1-2 KiB with its certificate).
MAX_SESSIONS = 4096

_Target = tuple[str, int]


class ContainerTLS:
    """The bridges' TLS client side: one context, and the last session per container address."""

    def __init__(self, max_sessions: int = MAX_SESSIONS) -> None:
        context = container_tls_options().getContext()
        # TLS 1.3 clients keep the server's session tickets only with client caching on;
        # OpenSSL's own store is left out, the sessions are kept per container below.
        context.set_session_cache_mode(SSL.SESS_CACHE_CLIENT | SSL.SESS_CACHE_NO_INTERNAL)
        self._context = context
        self._max = max_sessions
        self._sessions: OrderedDict[_Target, SSL.Session] = OrderedDict()

    def to(self, host: str, port: int) -> _TargetTLS:
        """The connection creator for one connection to the container at host:port."""
        return _TargetTLS(self, (host, port))

    def remember(self, host: str, port: int, connection: SSL.Connection) -> None:
        """Keep the session of an open connection for the next one to the same container."""
        session = connection.get_session()
        if session is None:
            return
        target = (host, port)
        self._sessions[target] = session
        self._sessions.move_to_end(target)
        while len(self._sessions) > self._max:
            self._sessions.popitem(last=False)

    def forget(self, host: str, port: int) -> None:
        """Drop the session of a container that could not be reached (it is gone or replaced)."""
        self._sessions.pop((host, port), None)

    def _connection(self, target: _Target) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_connect_state()
        session = self._sessions.get(target)
        if session is not None:
            connection.set_session(session)
        return connection


@implementer(IOpenSSLClientConnectionCreator)
class _TargetTLS:
    __slots__ = ("_tls", "_target")

    def __init__(self, tls: ContainerTLS, target: _Target) -> None:
        self._tls = tls
        self._target = target

    def clientConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        return self._tls._connection(self._target)
