"""The ceiling on request bodies (web/bodies.py), on a real twisted.web channel: a declared
length over it is answered 413 before the body is read, a chunked body as soon as it passes it,
and a body within it reaches the resource whole."""

from __future__ import annotations

import json

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource
from twisted.web.server import Site

from desktop_relay.web.bodies import bounded_request


class Echo(Resource):
    isLeaf = True

    def render_PUT(self, request) -> bytes:  # type: ignore[no-untyped-def]
        return b"got %d" % len(request.content.read())


def channel(limit: int) -> tuple[object, StringTransport]:
    # A clock of its own: the channel's idle timeout must not reach the global reactor.
    site = Site(Echo(), reactor=Clock())
    site.requestFactory = bounded_request(limit)
    protocol = site.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def test_a_declared_length_over_the_ceiling_is_answered_413_before_the_body() -> None:
    protocol, transport = channel(1000)
    protocol.dataReceived(b"PUT /api/files/default/big HTTP/1.1\r\nHost: relay\r\n"  # type: ignore[attr-defined]
                          b"Accept-Language: de\r\nContent-Length: 1001\r\n\r\n")
    head, _, body = transport.value().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"Content-Language: de" in head
    problem = json.loads(body)
    assert problem["type"].endswith(":upload-too-large")
    assert problem["title"] == "Datei zu groß"
    assert transport.disconnecting


def test_a_chunked_body_is_cut_off_once_it_passes_the_ceiling() -> None:
    protocol, transport = channel(1000)
    protocol.dataReceived(b"PUT /x HTTP/1.1\r\nHost: relay\r\nTransfer-Encoding: chunked\r\n\r\n")  # type: ignore[attr-defined]
    protocol.dataReceived(b"258\r\n" + b"x" * 600 + b"\r\n")  # type: ignore[attr-defined]
    assert transport.value() == b""
    protocol.dataReceived(b"258\r\n" + b"x" * 600 + b"\r\n")  # type: ignore[attr-defined]
    assert transport.value().startswith(b"HTTP/1.1 413 ")
    assert transport.disconnecting


def test_a_body_within_the_ceiling_reaches_the_resource() -> None:
    protocol, transport = channel(1000)
    protocol.dataReceived(b"PUT /x HTTP/1.1\r\nHost: relay\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000)  # type: ignore[attr-defined]
    assert transport.value().startswith(b"HTTP/1.1 200 ")
    assert transport.value().endswith(b"got 1000")
