"""Autobahn as both sides of a bridge use it: close frames with any valid code, status lines the
resolver cannot inject into, Autobahn's per-connection leftovers dropped, and its Twisted
adapter's read and write entry points without their per-call debug formatting."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from autobahn.util import encode_truncate
from autobahn.websocket.protocol import WebSocketProtocol

# Codes a close frame may carry (RFC 6455 7.4; 1004-1006 and 1015 are never sent).
_SENDABLE_CODES = frozenset(WebSocketProtocol.CLOSE_STATUS_CODES_ALLOWED)


def _sendable(code: int | None) -> bool:
    return code is not None and (code in _SENDABLE_CODES or 3000 <= code <= 4999)


def _status_reason(code: int, reason: str | None) -> str:
    """One clean line for an HTTP status line: resolver text must not inject headers."""
    if not reason:
        try:
            return HTTPStatus(code).phrase
        except ValueError:
            return "Refused"
    return " ".join(str(reason).split())[:200]


def _state(proto: WebSocketProtocol) -> int | None:
    # Autobahn sets .state only once the TCP connection is made.
    return getattr(proto, "state", None)


def _close(proto: WebSocketProtocol, code: int, reason: str) -> None:
    """Start the closing handshake with any valid code (Autobahn's sendClose takes only
    1000 and 3000-4999, and we must send 1001/1011 too)."""
    state = _state(proto)
    if state == WebSocketProtocol.STATE_OPEN:
        proto.sendCloseFrame(code=code, reasonUtf8=encode_truncate(reason, 123), isReply=False)
    elif state in (WebSocketProtocol.STATE_CONNECTING, WebSocketProtocol.STATE_PROXY_CONNECTING):
        proto.dropConnection(abort=True)


def _forget_close_timer(proto: WebSocketProtocol) -> None:
    # Autobahn leaves its close-handshake timer behind when the TCP goes first.
    call = getattr(proto, "closeHandshakeTimeoutCall", None)
    if call is not None:
        call.cancel()
        proto.closeHandshakeTimeoutCall = None


class _LeanTransportMixin:
    """Entry points of Autobahn's Twisted adapter without their debug-log arguments.

    Autobahn formats ``hltype(...)``/``hlval(...)`` for a debug line on every read and every
    write even when debug logging is off; on a bridge that is one call per TLS record (16 KiB)
    and about a tenth of the relay's CPU. These do the same work without it.
    """

    def dataReceived(self, data: bytes) -> None:
        self._dataReceived(data)  # type: ignore[attr-defined]

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        if sync or chopsize or self.send_queue or self.logOctets:  # type: ignore[attr-defined]
            super().sendData(data, sync, chopsize)  # type: ignore[misc]
            return
        self.transport.write(data)  # type: ignore[attr-defined]
        if self.state == WebSocketProtocol.STATE_OPEN:  # type: ignore[attr-defined]
            self.trafficStats.outgoingOctetsWireLevel += len(data)  # type: ignore[attr-defined]


def _forget_handshake(proto: WebSocketProtocol) -> None:
    # Autobahn keeps the raw handshake and parsed headers for its test suite; a long-lived
    # idle bridge has no use for them.
    for name in ("http_request_data", "http_response_data", "http_headers", "http_request_params"):
        if hasattr(proto, name):
            setattr(proto, name, None)


class _Silent:
    """A stand-in for Autobahn's logger on a refused connection, whose refusal the bridge
    logs once itself (DesktopBridgeProtocol.failHandshake)."""

    def __getattr__(self, level: str) -> Any:
        return _ignore


def _ignore(*args: object, **kwargs: object) -> None:
    pass


_SILENT = _Silent()

