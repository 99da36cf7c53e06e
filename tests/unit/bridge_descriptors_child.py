"""Run by test_bridge_descriptors.py in a process of its own: a bridge (Site + WebSocketResource +
DesktopBridgeFactory), a TLS WebSocket container and browsers, all here, under a soft
RLIMIT_NOFILE lowered to a few bridges above the bridge's reserve. Opens bridges until one is
refused, checks the open ones still work, and prints what it saw as JSON."""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, for tls_certs

from autobahn.twisted.resource import WebSocketResource  # noqa: E402
from autobahn.twisted.websocket import (  # noqa: E402
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from tls_certs import pem, self_signed  # noqa: E402
from twisted.internet import defer, task  # noqa: E402
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol  # noqa: E402
from twisted.internet.ssl import PrivateCertificate  # noqa: E402
from twisted.logger import LogLevel, formatEvent, globalLogPublisher  # noqa: E402
from twisted.web.resource import Resource  # noqa: E402
from twisted.web.server import Site  # noqa: E402

from desktop_relay.backend import Backend  # noqa: E402
from desktop_relay.fdlimit import RESERVE  # noqa: E402
from desktop_relay.relay.bridge import BridgeTarget, DesktopBridgeFactory  # noqa: E402

#: Bridges the lowered limit leaves room for (each takes 4 descriptors here: both ends of both sockets).
ROOM = 3


class Desktop(WebSocketServerProtocol):
    def onOpen(self) -> None:
        self.factory.opened += 1
        self.sendMessage(b"RFB 003.008\n", isBinary=True)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary)


class _Quiet:
    # The browsers' own Autobahn lines: only the relay's are counted.
    def __getattr__(self, level: str) -> Any:
        return lambda *args, **kwargs: None


class Browser(WebSocketClientProtocol):
    log = _Quiet()

    def __init__(self) -> None:
        super().__init__()
        self.opened: defer.Deferred[None] = defer.Deferred()
        self.messages: defer.DeferredQueue[bytes] = defer.DeferredQueue()

    def onOpen(self) -> None:
        self.opened.callback(None)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.messages.put(payload)

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        if not self.opened.called:
            self.opened.errback(RuntimeError(reason))


async def main(reactor: Any) -> None:
    certificate, key = pem(*self_signed("localhost"))
    container = WebSocketServerFactory("wss://127.0.0.1")
    container.protocol = Desktop
    container.opened = 0
    cport = reactor.listenSSL(
        0, container, PrivateCertificate.loadPEM(certificate + key).options(), interface="127.0.0.1"
    )
    target = BridgeTarget(Backend("127.0.0.1", cport.getHost().port, "pw"), "s1", "pupil")
    factory = DesktopBridgeFactory(
        lambda request: defer.succeed(target), reactor=reactor, url="ws://127.0.0.1:8080",
        max_message_size=1 << 20, ping_interval=0, open_timeout=5,
    )
    session = Resource()
    session.putChild(b"websockify", WebSocketResource(factory))
    desktop = Resource()
    desktop.putChild(b"s1", session)
    root = Resource()
    root.putChild(b"desktop", desktop)
    port = reactor.listenTCP(0, Site(root), interface="127.0.0.1").getHost().port

    lines: list[str] = []
    def observe(event: dict) -> None:
        if event.get("log_level", LogLevel.debug) >= LogLevel.info and "OneShot" not in event.get("log_namespace", ""):
            lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    in_use = len(os.listdir("/proc/self/fd"))
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + RESERVE + 4 * ROOM, hard))

    browsers: list[Browser] = []
    refused: str | None = None
    for _ in range(4 * ROOM):
        browser = Browser()
        browser.factory = WebSocketClientFactory(
            f"ws://127.0.0.1:{port}/desktop/s1/websockify", origin="http://127.0.0.1:8080", protocols=["binary"]
        )
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), browser)
        try:
            await browser.opened
        except RuntimeError:
            refused = browser.http_status_line
            break
        browsers.append(browser)
    lines_at_refusal = list(lines)
    echoes = []
    for i, browser in enumerate(browsers):
        assert await browser.messages.get() == b"RFB 003.008\n"
        browser.sendMessage(b"still here %d" % i, isBinary=True)
        echoes.append((await browser.messages.get()).decode())
    print(json.dumps({
        "opened": len(browsers),
        "refused": refused,
        "bridges": factory.bridge_count,
        "container_connections": container.opened,
        "lines": [line for line in lines_at_refusal if "bridge open" not in line],
        "echoes": echoes,
    }))
    for browser in browsers:
        browser.dropConnection(abort=True)
    await task.deferLater(reactor, 0.1, lambda: None)


if __name__ == "__main__":
    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor)))
