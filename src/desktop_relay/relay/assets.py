"""The asset relay: a browser's GET or HEAD under ``/desktop/<session>/`` streamed to that session's
desktop container (KasmVNC's HTTPS web server) and the container's answer streamed back.

This module owns what crosses between the two sides: which request headers reach a container (an
allow-list) and which response headers reach the browser, how failures look to the browser (short
plain-text 502s), and the flow control that keeps a slow browser from growing the relay's memory.
Who may reach which container is decided before this module is called: the web layer hands over a
`Backend` only after it has authenticated the user and authorised the session. With a
ClientFileCache, the web client's static files that a user's browser has had once are answered
from memory, without the container (relay/client_cache.py says when and why that is safe).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

import attr
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import (
    PotentialDataLoss,
    ResponseDone,
    ResponseFailed,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgent, IRequest, IResponse
from twisted.web.server import Request

from desktop_relay.backend import Backend, container_agent
from desktop_relay.relay.client_cache import MAX_ENTRY, MAX_FILE, CachedFile, ClientFileCache, is_module_request

RELAYED_METHODS = frozenset({b"GET", b"HEAD"})
ALLOW = b"GET, HEAD"

# An allow-list, not a deny-list: behind Apache a request carries whatever Apache and the browser
# add (cookies, credentials, X-Forwarded-*, trusted-header identities, headers invented later),
# and a container needs none of it to serve its web client. Anything not named here stays behind.
# X-Forwarded-For/-Proto are deliberately not sent: KasmVNC uses X-Forwarded-For only to blacklist
# addresses after failed logins, and the only client that ever logs in to a container is the relay.
# Blaming browser addresses (which the relay would have to take on trust from Apache) buys nothing,
# and it would tell the container who the user is. Nothing in KasmVNC builds URLs from -Proto.
FORWARDED_REQUEST_HEADERS = (
    b"accept",
    b"accept-encoding",
    b"accept-language",
    b"cache-control",
    b"if-modified-since",
    b"if-none-match",
    b"if-range",
    b"range",
    b"user-agent",
)

# Hop-by-hop headers (RFC 9110, 7.6.1) belong to one connection; so do the headers a Connection
# header names, and every Proxy-* header (checked by prefix).
HOP_BY_HOP_HEADERS = frozenset(
    {b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)

# A container must not set cookies on the relay's origin, and its Basic-auth challenge is meant
# for the relay (whose credentials failed), never a prompt in the user's browser.
WITHHELD_RESPONSE_HEADERS = frozenset({b"set-cookie", b"set-cookie2", b"www-authenticate"})

UNREACHABLE_MESSAGE = "The desktop is not answering. It may be starting or stopping; try again shortly."
REFUSED_MESSAGE = "The desktop refused the relay's credentials."
METHOD_MESSAGE = "Only GET and HEAD are relayed to a desktop."

# Characters left as they are when a decoded path or a query is put back into a URL: the
# delimiters (so the structure survives) and "%" in the query (already-escaped bytes stay escaped).
_PATH_SAFE = "/:@!$&'()*+,;=~"
_QUERY_SAFE = _PATH_SAFE + "?%"


class AssetRelay:
    """Relays browser requests for a desktop's web files to its container, streaming the answer."""

    def __init__(
        self,
        reactor: IReactorTime,
        *,
        agent: IAgent | None = None,
        connect_timeout: float = 10,
        response_timeout: float = 30,
        cache: ClientFileCache | None = None,
    ) -> None:
        """`connect_timeout` bounds the TCP connect of the default agent (ignored with `agent`);
        `response_timeout` bounds the wait from sending the request to the response headers,
        which covers a TLS handshake that never completes. A body has no time limit: a slow
        browser legitimately pauses it. With `cache`, the web client's files are answered from
        memory once the user's browser has had them (relay/client_cache.py)."""
        self._reactor = reactor
        self._cache = cache
        self._agent: IAgent
        if agent is None:
            self._agent = container_agent(reactor, connect_timeout)
        else:
            self._agent = agent
        self._response_timeout = response_timeout

    def relay(
        self, request: Request, backend: Backend, path: str, *, session_id: str | None = None,
        user_id: str | None = None,
    ) -> Deferred[None]:
        """Answer `request` with the container's response for `path` (decoded, below the session
        prefix; the request's query string is added), streaming the body. `session_id` and
        `user_id` (whose session it is, already checked) let the client's files come from the cache.

        The relay finishes the request itself; the Deferred fires with None once the response is
        complete or the browser has gone, and never fails, so a Klein handler can return it.
        Cancelling it stops the upstream request and drops the browser's connection.
        """
        if request.method not in RELAYED_METHODS:
            _answer_plain(request, 405, METHOD_MESSAGE, allow=ALLOW)
            return succeed(None)
        keep: _Keep | None = None
        if self._cache is not None and session_id is not None and user_id is not None:
            cache = self._cache
            if path == "" and request.method == b"GET":
                # The client's entry document names the session's client build: read on the way.
                keep = _Keep(MAX_ENTRY, lambda code, phrase, headers, body: cache.entry_seen(
                    session_id, user_id, body, headers),
                    announce=lambda headers: cache.modules_to_announce(user_id, headers))
            elif _plain_get(request):
                cached = cache.lookup(session_id, user_id, path)
                if cached is not None:
                    _answer_cached(request, cached)
                    return succeed(None)
                if cache.wants(session_id, user_id, path):
                    module = is_module_request(request.requestHeaders)
                    keep = _Keep(MAX_FILE, lambda code, phrase, headers, body: cache.store(
                        session_id, user_id, path, code, phrase, headers, body, module))
        exchange = _Exchange(request, backend, keep)
        return exchange.start(
            self._agent,
            upstream_url(backend, path, request.uri),
            upstream_headers(request.requestHeaders, backend),
            self._reactor,
            self._response_timeout,
        )


@attr.s(frozen=True, auto_attribs=True)
class _Keep:
    """Who gets a whole 200 body once it has been relayed (status, phrase, the browser's
    headers, body), for bodies up to `limit` bytes."""

    limit: int
    kept: Callable[[int, bytes, Headers, bytes], object]
    # For an entry document: the paths its answer announces for preloading (client_cache.py).
    announce: Callable[[Headers], list[str]] | None = None


def _plain_get(request: Request) -> bool:
    # A query may select anything; a Range asks for part of a file.
    return b"?" not in (request.uri or b"") and not request.requestHeaders.hasHeader(b"range")


def _answer_cached(request: Request, cached: CachedFile) -> None:
    """Answer with a file the relay kept, as the container sent it (Date and length are ours)."""
    if _is_finished_or_gone(request):
        return
    request.setResponseCode(cached.code, cached.phrase)
    for name, values in cached.headers:
        if name.lower() not in (b"date", b"content-length"):
            request.responseHeaders.setRawHeaders(name, list(values))
    if not request.responseHeaders.hasHeader(b"content-type"):
        request.defaultContentType = None
    request.setHeader(b"content-length", b"%d" % (len(cached.body),))
    if request.method != b"HEAD":
        request.write(cached.body)
    request.finish()


class _Exchange:
    """One relayed request: waiting for the container's headers, then streaming its body."""

    _log = Logger()

    def __init__(self, request: Request, backend: Backend, keep: _Keep | None = None) -> None:
        self._request = request
        self._keep = keep
        # The body so far, while it is one to keep.
        self._kept: list[bytes] | None = None
        self._kept_size = 0
        self._status = (0, b"")
        self._backend = backend
        self._path = request.path.decode("utf-8", "replace")
        self._done: Deferred[None] = Deferred(self._cancel)
        # The upstream request until its response headers arrive.
        self._pending: Deferred[IResponse] | None = None
        # The upstream body's transport while the body streams.
        self._upstream: IPushProducer | None = None
        # Set once the browser gets nothing more from this exchange: it left, or we dropped it.
        self._abandoned = False

    def start(
        self,
        agent: IAgent,
        url: bytes,
        headers: Headers,
        reactor: IReactorTime,
        response_timeout: float,
    ) -> Deferred[None]:
        """Send the upstream request; the result is the `relay` Deferred."""
        if _is_finished_or_gone(self._request):
            # Authorisation took long enough for the browser to leave; notifyFinish would never fire.
            self._done.callback(None)
            return self._done
        self._request.notifyFinish().addErrback(self._browser_left)
        # Always GET upstream: KasmVNC answers GET only. A HEAD gets the GET's headers, no body.
        pending = maybeDeferred(agent.request, b"GET", url, headers)
        self._pending = pending
        pending.addTimeout(response_timeout, reactor, onTimeoutCancel=_no_response_in_time)
        pending.addCallbacks(self._respond, self._unreachable)
        pending.addErrback(self._broken)
        return self._done

    def _respond(self, response: IResponse) -> None:
        self._pending = None
        if response.code == 401:
            self._log.error(
                "Desktop {host}:{port} refused the relay's credentials for {path}",
                host=self._backend.host,
                port=self._backend.port,
                path=self._path,
            )
            response.deliverBody(_Discard())
            self._answer(502, REFUSED_MESSAGE)
            return
        request = self._request
        request.setResponseCode(response.code, response.phrase)
        copy_response_headers(response, request.responseHeaders)
        if not request.responseHeaders.hasHeader(b"content-type"):
            # twisted.web would otherwise label an untyped body text/html.
            request.defaultContentType = None
        if self._keep is not None and self._keep.announce is not None and response.code == 200:
            modules = self._keep.announce(request.responseHeaders)
            if modules:
                request.responseHeaders.addRawHeader(b"link", b", ".join(
                    b"<%s>; rel=modulepreload" % quote(path).encode("ascii") for path in modules))
        if request.method == b"HEAD":
            response.deliverBody(_Discard())
            self._finish()
            return
        if self._keep is not None and response.code == 200 and response.length is not UNKNOWN_LENGTH:
            self._kept = []
            self._status = (response.code, response.phrase)
        response.deliverBody(_BodyStream(self))

    def _unreachable(self, failure: Failure) -> None:
        self._pending = None
        if self._abandoned:
            # Cancelled by us because the browser left or the relay was cancelled.
            return
        self._log.warn(
            "Desktop {host}:{port} unreachable for {path}: {reason}",
            host=self._backend.host,
            port=self._backend.port,
            path=self._path,
            reason=_describe(failure),
        )
        self._answer(502, UNREACHABLE_MESSAGE)

    def _broken(self, failure: Failure) -> None:
        self._log.failure("Relaying {path} failed", failure, path=self._path)
        self._abandon()

    def body_started(self, upstream: IPushProducer) -> None:
        """The body is about to flow: let the browser's connection pace the container's."""
        self._upstream = upstream
        self._request.registerProducer(upstream, True)

    def body_received(self, data: bytes) -> None:
        """A piece of the container's body, for the browser."""
        if not self._abandoned:
            self._request.write(data)
            if self._kept is not None and self._keep is not None:
                self._kept_size += len(data)
                if self._kept_size > self._keep.limit:
                    self._kept = None
                else:
                    self._kept.append(data)

    def body_ended(self, reason: Failure) -> None:
        """The container's body is complete, or broke off."""
        self._upstream = None
        if self._abandoned:
            # The end of our own stopProducing; nothing to tell anyone.
            return
        self._request.unregisterProducer()
        # PotentialDataLoss: a body without length ends when the connection closes; that is how
        # HTTP/1.x marks its end, not a failure.
        if reason.check(ResponseDone, PotentialDataLoss):
            if reason.check(ResponseDone) and self._kept is not None and self._keep is not None:
                self._keep.kept(*self._status, self._request.responseHeaders, b"".join(self._kept))
            self._finish()
            return
        self._log.warn(
            "Desktop {host}:{port} broke off {path} mid-body: {reason}",
            host=self._backend.host,
            port=self._backend.port,
            path=self._path,
            reason=_describe(reason),
        )
        # Finishing would tell the browser the truncated body is complete; dropping it does not.
        self._abandon()

    def _browser_left(self, reason: Failure) -> None:
        if not self._abandoned:
            self._log.debug("Browser left during {path}", path=self._path)
        self._abandoned = True
        self._stop_upstream()
        self._fire()

    def _cancel(self, done: Deferred[None]) -> None:
        # Klein cancels when the browser has gone; _browser_left has usually fired the Deferred
        # by then, and if not, _abandon fires it. Cancelled while the browser is still there, the
        # Deferred fails with CancelledError after the connection has been aborted.
        self._abandon()

    def _abandon(self) -> None:
        """Stop both sides: the upstream request or body, and the browser's connection.

        The browser's connection is aborted, not closed: an abort drops what is still buffered,
        so nothing written afterwards (a final chunk, say) can make a truncated body look whole.
        Its connectionLost then fires notifyFinish and, through _browser_left, the relay's
        Deferred: whoever waits on that (Klein) sees a finished request and leaves it alone.
        """
        if self._abandoned:
            return
        self._abandoned = True
        self._stop_upstream()
        if _is_finished_or_gone(self._request):
            self._fire()
        else:
            self._request.transport.abortConnection()  # type: ignore[union-attr]

    def _stop_upstream(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
        if self._upstream is not None:
            self._upstream.stopProducing()

    def _answer(self, code: int, message: str) -> None:
        _answer_plain(self._request, code, message)
        self._fire()

    def _finish(self) -> None:
        self._request.finish()
        self._fire()

    def _fire(self) -> None:
        if not self._done.called:
            self._done.callback(None)


class _BodyStream(Protocol):
    """Hands the container's body to its exchange as it arrives."""

    def __init__(self, exchange: _Exchange) -> None:
        self._exchange = exchange

    def connectionMade(self) -> None:
        # This transport is an IPushProducer: pausing it stops reading from the container.
        self._exchange.body_started(self.transport)  # type: ignore[arg-type]

    def dataReceived(self, data: bytes) -> None:
        self._exchange.body_received(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._exchange.body_ended(reason)


class _Discard(Protocol):
    """Takes a body nobody wants and closes its connection instead of reading it."""

    def connectionMade(self) -> None:
        self.transport.stopProducing()  # type: ignore[union-attr]


def upstream_url(backend: Backend, path: str, uri: bytes) -> bytes:
    """The container URL for `path` (as Klein decoded it) with the browser's query string."""
    url = backend.url(quote(path, safe=_PATH_SAFE)).encode("ascii")
    _, question, query = uri.partition(b"?")
    return url + question + quote(query, safe=_QUERY_SAFE).encode("ascii")


def upstream_headers(browser: Headers, backend: Backend) -> Headers:
    """The allowed browser headers, minus any the browser marked hop-by-hop, plus the relay's
    own credentials."""
    named = _connection_tokens(browser)
    headers = Headers()
    for name in FORWARDED_REQUEST_HEADERS:
        values = browser.getRawHeaders(name)
        if values and name not in named:
            headers.setRawHeaders(name, values)
    headers.setRawHeaders(b"authorization", [backend.authorization])
    return headers


def copy_response_headers(response: IResponse, browser: Headers) -> None:
    """The container's end-to-end headers, for the browser.

    Twisted's HTTP client keeps the framing headers (Content-Length, Connection, Keep-Alive, TE,
    Transfer-Encoding, Upgrade) out of `response.headers`; the length comes back from
    `response.length`. A container's Connection header is therefore not visible here, so headers
    it names cannot be dropped by name (KasmVNC only ever says `Connection: close`).
    """
    for name, values in response.headers.getAllRawHeaders():
        lowered = name.lower()
        if (
            lowered in HOP_BY_HOP_HEADERS
            or lowered.startswith(b"proxy-")
            or lowered in WITHHELD_RESPONSE_HEADERS
        ):
            continue
        browser.setRawHeaders(name, values)
    # A known length lets the browser tell a truncated body from a whole one and show progress.
    # 304 and 204 carry no body, and a length there would describe something else.
    if response.length is not UNKNOWN_LENGTH and response.code not in (204, 304):
        browser.setRawHeaders(b"content-length", [b"%d" % (response.length,)])


def _connection_tokens(headers: Headers) -> set[bytes]:
    """The header names a Connection header declares hop-by-hop."""
    tokens: set[bytes] = set()
    for value in headers.getRawHeaders(b"connection", []):
        tokens.update(token.strip().lower() for token in value.split(b","))
    tokens.discard(b"")
    return tokens


def _answer_plain(request: IRequest, code: int, message: str, allow: bytes | None = None) -> None:
    """Answer with a short plain-text message the browser shows as it is."""
    body = message.encode("utf-8") + b"\n"
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"content-length", b"%d" % (len(body),))
    request.setHeader(b"cache-control", b"no-store")
    if allow is not None:
        request.setHeader(b"allow", allow)
    request.write(body)
    request.finish()


def _is_finished_or_gone(request: IRequest) -> bool:
    # twisted.web drops a request's channel when it finishes or its connection is lost.
    return getattr(request, "channel", None) is None


def _describe(failure: Failure) -> str:
    """A one-line reason, unwrapping the lists of reasons the HTTP client wraps failures in."""
    if isinstance(failure.value, ResponseFailed):
        return "; ".join(_describe(reason) for reason in failure.value.reasons)
    return failure.getErrorMessage() or failure.type.__name__


def _no_response_in_time(result: object, timeout: float) -> Failure:
    # Without this the timeout shows as the agent's CancelledError, wrapped and without a message.
    return Failure(TimeoutError(f"no response within {timeout:g} s"))
