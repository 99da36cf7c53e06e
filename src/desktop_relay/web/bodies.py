"""The ceiling on request bodies: twisted.web's Request, refusing a body larger than the largest
upload ([homes] files_max_upload) as it arrives, before it fills the disk.

twisted.web receives a whole body before a resource sees the request: up to 100 kB in memory,
anything larger in a temporary file. Without a ceiling that file would grow as long as a client
sends. A declared Content-Length over the ceiling is answered 413 at once, before any of the
body is read; a chunked body is cut off as soon as it passes it. Either way the connection is
closed, as the rest of the body is never read.
"""

from __future__ import annotations

import json

from twisted.logger import Logger
from twisted.web.server import Request

from ..i18n import N_
from .responses import Problem, request_language

_log = Logger()
_MB = 1024 * 1024


class BoundedRequest(Request):
    """A Request whose body may hold at most `max_body` bytes (set by `bounded_request`)."""

    max_body: int = 1024**3
    _received = 0
    _refused = False

    def gotLength(self, length: int | None) -> None:
        super().gotLength(length)
        if length is not None and length > self.max_body:
            self._refuse()

    def handleContentChunk(self, data: bytes) -> None:
        if self._refused:
            return
        self._received += len(data)
        if self._received > self.max_body:
            self._refuse()
            return
        super().handleContentChunk(data)

    def _refuse(self) -> None:
        """Answer 413 straight on the connection (the request is not parsed to its end, so it
        cannot be rendered) and close it."""
        self._refused = True
        problem = Problem(413, "upload-too-large", N_("File too large"),
                          N_("Files up to {megabytes} MB can be uploaded."),
                          values={"megabytes": self.max_body // _MB})
        words = request_language(self)
        body = json.dumps(problem.body("", words)).encode("utf-8")
        address = getattr(self.getClientAddress(), "host", "unknown")
        _log.warn("refused a request body from {address}: larger than {limit} bytes",
                  address=address, limit=self.max_body)
        transport = self.channel.transport
        # The channel is receiving this body, so it has its connection.
        assert transport is not None
        transport.write(
            b"HTTP/1.1 413 Content Too Large\r\n"
            b"Content-Type: application/problem+json\r\n"
            b"Content-Language: " + words.code.encode("ascii") + b"\r\n"
            b"Cache-Control: no-store\r\n"
            b"Connection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        transport.loseConnection()


def bounded_request(max_body: int) -> type[BoundedRequest]:
    """A Request class for a Site (its requestFactory) that takes bodies up to `max_body` bytes."""
    return type("BoundedRequest", (BoundedRequest,), {"max_body": max_body})
