"""A small WebSocket backend that records what reached it, and a raw client to talk through Apache.

The backend stands where the relay stands behind Apache (plain HTTP on loopback). It writes down
every request head exactly as received (so a stripped Upgrade, a lost Origin or a rewritten path
shows), answers a proper upgrade with 101 like the relay does, speaks first (as VNC servers do),
echoes frames and, on request, pings. A request that lost its upgrade on the way gets the
relay's answer: 400. Plain requests can ask for a slow, chunked response. Stdlib only, threads:
no reactor, so it runs beside any test.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import socketserver
import struct
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from apache_harness import tls_connect

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
SERVER_HELLO = b"RFB 003.008\n"  # what the backend sends first, like a VNC server


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode("ascii")


@dataclass
class ReceivedRequest:
    """One request head as it reached the backend."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    upgraded: bool = False
    frames_in: list[bytes] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive), or None."""
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        """Every value of a header, in order."""
        return [v for k, v in self.headers if k.lower() == name.lower()]


def read_head(sock: socket.socket) -> tuple[str, list[tuple[str, str]], bytes]:
    """Read an HTTP head: (first line, headers, bytes read past it)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed inside the HTTP head: {buf!r}")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return lines[0], headers, rest


class FrameReader:
    """RFC 6455 frames from a socket (masked or not), one at a time."""

    def __init__(self, sock: socket.socket, pending: bytes = b"") -> None:
        self.sock = sock
        self.buf = pending

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame; fragments are not reassembled."""
        b0, b1 = self._exact(2)
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._exact(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._exact(8))
        mask = self._exact(4) if b1 & 0x80 else None
        payload = self._exact(length)
        if mask:
            payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        return b0 & 0x0F, payload


def encode_frame(opcode: int, payload: bytes, *, masked: bool) -> bytes:
    """One final frame; clients must mask, servers must not."""
    head = bytes([0x80 | opcode])
    bit = 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))


class _Handler(socketserver.BaseRequestHandler):
    server: RecordingBackend

    def handle(self) -> None:
        sock = self.request
        sock.settimeout(60)
        try:
            line, headers, rest = read_head(sock)
        except (ConnectionError, OSError):
            return
        method, target = (line.split(" ") + ["", ""])[:2]
        request = ReceivedRequest(method, target, headers)
        self.server.record(request)
        query = parse_qs(urlsplit(target).query)
        upgrade = (request.header("upgrade") or "").lower() == "websocket"
        connection = (request.header("connection") or "").lower()
        key = request.header("sec-websocket-key")
        if upgrade and "upgrade" in connection and key:
            self._websocket(sock, request, key, rest, float(query.get("ping", ["0"])[0]))
        elif "websockify" in target:
            # What the relay says when a proxy dropped the upgrade on the way.
            self._plain(sock, 400, b"WebSocket upgrade expected")
        elif "stream" in query:
            self._stream(sock, float(query["stream"][0]))
        else:
            self._plain(sock, 200, b"plain answer", [("X-Frame-Options", "DENY")])

    def _plain(self, sock: socket.socket, status: int, body: bytes,
               extra: list[tuple[str, str]] | None = None) -> None:
        lines = [f"HTTP/1.1 {status} X", "Content-Type: text/plain", f"Content-Length: {len(body)}",
                 "Connection: close", *(f"{k}: {v}" for k, v in extra or [])]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    def _stream(self, sock: socket.socket, pause: float) -> None:
        """A chunked response whose second half follows only after a pause."""
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
                     b"Connection: close\r\n\r\n")
        for part in (b"first half\n", b"second half\n"):
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            if part.startswith(b"first"):
                time.sleep(pause)
        sock.sendall(b"0\r\n\r\n")

    def _websocket(self, sock: socket.socket, request: ReceivedRequest, key: str, rest: bytes,
                   ping: float) -> None:
        offered = [p.strip() for v in request.all("sec-websocket-protocol") for p in v.split(",") if p.strip()]
        lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
                 f"Sec-WebSocket-Accept: {accept_key(key)}"]
        if offered:
            lines.append(f"Sec-WebSocket-Protocol: {offered[0]}")
        request.upgraded = True
        lock = threading.Lock()

        def send(opcode: int, payload: bytes) -> None:
            with lock:
                sock.sendall(encode_frame(opcode, payload, masked=False))

        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        send(OP_BINARY, SERVER_HELLO)
        stop = threading.Event()
        if ping > 0:
            def pinger() -> None:
                while not stop.wait(ping):
                    try:
                        send(OP_PING, b"keepalive")
                    except OSError:
                        return
            threading.Thread(target=pinger, daemon=True).start()
        reader = FrameReader(sock, rest)
        try:
            while True:
                opcode, payload = reader.frame()
                if opcode in (OP_TEXT, OP_BINARY, OP_CONT):
                    request.frames_in.append(payload)
                    send(opcode or OP_BINARY, b"echo:" + payload)
                elif opcode == OP_PING:
                    send(OP_PONG, payload)
                elif opcode == OP_CLOSE:
                    send(OP_CLOSE, payload[:2])
                    return
        except (ConnectionError, OSError):
            return
        finally:
            stop.set()


class RecordingBackend(socketserver.ThreadingTCPServer):
    """The stand-in relay on 127.0.0.1:<port>; ``requests`` lists what reached it."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.port: int = self.server_address[1]
        self.requests: list[ReceivedRequest] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    def record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def start(self) -> RecordingBackend:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


@dataclass
class UpgradeResult:
    """What a browser-like client saw when asking Apache for an upgrade."""

    status: int
    headers: dict[str, str]
    body: bytes
    socket: WebSocketClient | None


class WebSocketClient:
    """A browser-side WebSocket over a TLS socket: masked frames out, pings answered."""

    def __init__(self, sock: socket.socket, pending: bytes) -> None:
        self.sock = sock
        self.reader = FrameReader(sock, pending)
        self.pings = 0

    def send(self, payload: bytes) -> None:
        self.sock.sendall(encode_frame(OP_BINARY, payload, masked=True))

    def receive(self, timeout: float = 5.0) -> bytes:
        """The next data frame's payload within timeout seconds; pings are answered and counted
        on the way (TimeoutError when only pings came)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no data frame within {timeout} s")
            self.sock.settimeout(remaining)
            opcode, payload = self.reader.frame()
            if opcode == OP_PING:
                self.pings += 1
                self.sock.sendall(encode_frame(OP_PONG, payload, masked=True))
            elif opcode == OP_CLOSE:
                raise ConnectionError(f"closed by the server: {payload!r}")
            elif opcode != OP_PONG:
                return payload

    def close(self) -> None:
        try:
            self.sock.sendall(encode_frame(OP_CLOSE, struct.pack("!H", 1000), masked=True))
        except OSError:
            pass
        self.sock.close()


def upgrade_through(port: int, path: str, *, origin: str | None, protocols: str | None = "binary",
                    host: str | None = None, extra: list[tuple[str, str]] | None = None) -> UpgradeResult:
    """Send a browser's WebSocket handshake to Apache over TLS; return what came back."""
    sock = tls_connect(port)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: {host or f'127.0.0.1:{port}'}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
             "User-Agent: desktop-relay-tests"]
    if origin:
        lines.append(f"Origin: {origin}")
    if protocols:
        lines.append(f"Sec-WebSocket-Protocol: {protocols}")
    lines += [f"{k}: {v}" for k, v in extra or []]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    line, header_list, rest = read_head(sock)
    status = int(line.split()[1])
    headers = {k.lower(): v for k, v in header_list}
    if status == 101:
        assert headers.get("sec-websocket-accept") == accept_key(key), "wrong Sec-WebSocket-Accept"
        return UpgradeResult(status, headers, b"", WebSocketClient(sock, rest))
    body = rest
    sock.settimeout(2)
    try:
        while len(body) < int(headers.get("content-length", "65536")):
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    except OSError:
        pass
    sock.close()
    return UpgradeResult(status, headers, body, None)
