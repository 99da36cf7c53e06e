"""The demo desktop image (images/desktop/, built by scripts/build-desktop-image) honours
the Kasm container contract (/work/shared/kasm-contract.md) that the relay relies on.

Starts real containers from ``desktop-relay/demo-desktop:latest`` (override with
``DESKTOP_RELAY_TEST_IMAGE``) and talks to them with plain sockets: TLS + HTTP Basic auth, the
KasmVNC-style WebSocket upgrade checks, and RFB through websockify down to the pixels.
Needs a reachable Docker engine and the image (scripts/ensure-docker,
scripts/build-desktop-image); only the stdlib, pytest and the docker SDK are used.
"""

import base64
import os
import socket
import ssl
import struct
import time

import docker
import pytest

pytestmark = pytest.mark.docker

IMAGE = os.environ.get("DESKTOP_RELAY_TEST_IMAGE", "desktop-relay/demo-desktop:latest")
PASSWORD = "secret123"
BACKGROUND = (42, 111, 151)  # #2a6f97, see images/desktop/README.md
BANNER = "------------------ KasmVNC environment started ------------------"


# --- helpers: TLS, raw HTTP, WebSocket, RFB ------------------------------------------------

def basic(user="kasm_user", password=PASSWORD):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def tls_connect(port, timeout=5.0):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def read_head(sock):
    """Read an HTTP response head; return (status, {lower-name: value}, leftover bytes)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0]:
        return None, {}, rest
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    return status, headers, rest


def http_get(port, path="/", headers=None):
    """One GET on its own TLS connection; returns (status, headers, body)."""
    sock = tls_connect(port)
    try:
        lines = [f"GET {path} HTTP/1.1", "Host: localhost"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        status, hdrs, body = read_head(sock)
        length = int(hdrs.get("content-length", -1))
        while length < 0 or len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return status, hdrs, body
    finally:
        sock.close()


def ws_upgrade(port, path="/websockify", origin="https://relay.example", protocol="binary",
               auth=None):
    """Send a WebSocket upgrade; return (status, headers, WebSocket or None)."""
    sock = tls_connect(port)
    key = base64.b64encode(os.urandom(16)).decode()
    auth = basic() if auth is None else auth
    lines = [f"GET {path} HTTP/1.1", "Host: localhost", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if origin:
        lines.append(f"Origin: {origin}")
    if protocol:
        lines.append(f"Sec-WebSocket-Protocol: {protocol}")
    if auth:
        lines.append(f"Authorization: {auth}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    status, headers, rest = read_head(sock)
    if status != 101:
        sock.close()
        return status, headers, None
    return status, headers, WebSocket(sock, rest)


class WebSocket:
    """Minimal RFC 6455 client over an established socket: masked binary frames out,
    reassembled binary payload in (read as a byte stream, like a TCP socket)."""

    def __init__(self, sock, pending=b""):
        self.sock = sock
        self.raw = pending  # undecoded frame bytes
        self.data = b""  # decoded payload not yet consumed

    def _raw_exact(self, n):
        while len(self.raw) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("WebSocket closed by the server")
            self.raw += chunk
        out, self.raw = self.raw[:n], self.raw[n:]
        return out

    def _frame(self):
        b0, b1 = self._raw_exact(2)
        opcode, length = b0 & 0x0F, b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._raw_exact(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._raw_exact(8))
        mask = self._raw_exact(4) if b1 & 0x80 else None
        payload = self._raw_exact(length)
        if mask:
            payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        return opcode, payload

    def recv_exact(self, n):
        while len(self.data) < n:
            opcode, payload = self._frame()
            if opcode in (0, 1, 2):
                self.data += payload
            elif opcode == 8:
                raise ConnectionError(f"WebSocket close frame: {payload!r}")
            elif opcode == 9:
                self._send(0xA, payload)
        out, self.data = self.data[:n], self.data[n:]
        return out

    def _send(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        self.sock.sendall(head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload)))

    def send(self, payload):
        self._send(2, payload)

    def close(self):
        try:
            self._send(8, struct.pack("!H", 1000))
        except OSError:
            pass
        self.sock.close()


class RFB:
    """Just enough of an RFB 3.8 client: security None, 32-bit RGB raw pixels."""

    def __init__(self, ws):
        self.ws = ws
        self.version = ws.recv_exact(12)
        ws.send(b"RFB 003.008\n")
        (count,) = ws.recv_exact(1)
        self.security_types = list(ws.recv_exact(count))
        ws.send(bytes([1]))  # None
        (self.security_result,) = struct.unpack("!I", ws.recv_exact(4))
        ws.send(bytes([1]))  # ClientInit, shared
        self.width, self.height = struct.unpack("!HH", ws.recv_exact(4))
        self.server_bpp, self.server_depth = ws.recv_exact(16)[:2]  # server pixel format
        (name_len,) = struct.unpack("!I", ws.recv_exact(4))
        self.name = ws.recv_exact(name_len).decode("latin-1")
        # SetPixelFormat: 32 bpp, depth 24, little endian, true colour, r<<16 g<<8 b
        ws.send(struct.pack("!B3xBBBBHHHBBB3x", 0, 32, 24, 0, 1, 255, 255, 255, 16, 8, 0))
        ws.send(struct.pack("!BxHi", 2, 1, 0))  # SetEncodings: raw only

    def grab(self, x, y, w, h):
        """Request a non-incremental update of a region; return {(x, y): (r, g, b)}."""
        self.ws.send(struct.pack("!BBHHHH", 3, 0, x, y, w, h))
        pixels = {}
        while True:
            (msg_type,) = self.ws.recv_exact(1)
            if msg_type == 0:  # FramebufferUpdate
                self.ws.recv_exact(1)
                (rects,) = struct.unpack("!H", self.ws.recv_exact(2))
                for _ in range(rects):
                    rx, ry, rw, rh, enc = struct.unpack("!HHHHi", self.ws.recv_exact(12))
                    assert enc == 0, f"unexpected encoding {enc}"
                    data = self.ws.recv_exact(rw * rh * 4)
                    for j in range(rh):
                        for i in range(rw):
                            b, g, r, _ = data[(j * rw + i) * 4:(j * rw + i) * 4 + 4]
                            pixels[(rx + i, ry + j)] = (r, g, b)
                if all((x + i, y + j) in pixels for i in range(w) for j in range(h)):
                    return pixels
            elif msg_type == 2:  # Bell
                continue
            elif msg_type == 3:  # ServerCutText
                self.ws.recv_exact(3)
                (n,) = struct.unpack("!I", self.ws.recv_exact(4))
                self.ws.recv_exact(n)
            else:
                raise AssertionError(f"unexpected RFB server message {msg_type}")

    def key(self, keysym):
        for down in (1, 0):
            self.ws.send(struct.pack("!BBxxI", 4, down, keysym))


def open_rfb(port, password=PASSWORD):
    status, headers, ws = ws_upgrade(port, auth=basic(password=password))
    assert status == 101, f"upgrade answered {status}, {headers}"
    return headers, RFB(ws)


# --- containers ------------------------------------------------------------------------------

def docker_client():
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means: no engine
        pytest.fail(f"Docker engine not reachable ({exc}); start it with scripts/ensure-docker",
                    pytrace=False)
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"image {IMAGE} missing; build it with scripts/build-desktop-image", pytrace=False)
    return client


class Desktop:
    def __init__(self, client, password=PASSWORD, **env):
        self.password = password
        environment = {"VNC_PW": password, **env}
        port = int(env.get("NO_VNC_PORT", 6901))
        self.started = time.monotonic()
        self.container = client.containers.run(
            IMAGE, detach=True, shm_size="512m", environment=environment,
            ports={f"{port}/tcp": ("127.0.0.1", None)})
        try:
            self.container.reload()
            self.port = int(self.container.ports[f"{port}/tcp"][0]["HostPort"])
        except Exception:
            self.remove()
            raise
        self.ready_after = self._wait_ready()

    def _wait_ready(self, timeout=15.0):
        last = None
        while time.monotonic() - self.started < timeout:
            try:
                status, _, _ = http_get(self.port, "/", {"Authorization": basic(password=self.password)})
                if status == 200:
                    return time.monotonic() - self.started
                last = status
            except (OSError, ValueError, IndexError) as exc:
                last = exc
            self.container.reload()
            if self.container.status == "exited":
                break
            time.sleep(0.05)
        logs = self.container.logs().decode(errors="replace")
        self.remove()
        pytest.fail(f"desktop not ready (last: {last!r}); logs:\n{logs}", pytrace=False)

    def logs(self):
        return self.container.logs().decode(errors="replace")

    def remove(self):
        try:
            self.container.remove(force=True)
        except docker.errors.NotFound:
            pass


@pytest.fixture(scope="module")
def client():
    return docker_client()


@pytest.fixture(scope="module")
def desktop(client):
    d = Desktop(client)
    try:
        yield d
    finally:
        d.remove()


# --- the contract ----------------------------------------------------------------------------

def test_ready_quickly_and_logs_the_kasm_banner(desktop):
    assert desktop.ready_after < 5.0, f"first 200 after {desktop.ready_after:.2f} s"
    deadline = time.monotonic() + 5
    while BANNER not in desktop.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert BANNER in desktop.container.logs(stdout=True, stderr=False).decode().splitlines()


def test_runs_as_kasm_user_with_fresh_pem(desktop):
    exit_code, out = desktop.container.exec_run(
        ["sh", "-c", 'id -un; id -u; echo "$HOME"; stat -c %u "$HOME"; cat "$HOME/.vnc/self.pem"'])
    assert exit_code == 0
    user, uid, home, home_owner, pem = out.decode().split("\n", 4)
    assert (user, uid, home, home_owner) == ("kasm-user", "1000", "/home/kasm-user", "1000")
    assert "PRIVATE KEY-----" in pem and "BEGIN CERTIFICATE-----" in pem


def test_missing_credentials_get_401_with_realm(desktop):
    for path in ("/", "/vnc.html", "/websockify"):
        status, headers, _ = http_get(desktop.port, path)
        assert status == 401, path
        assert headers.get("www-authenticate") == 'Basic realm="Websockify"'


def test_wrong_credentials_get_401(desktop):
    for auth in (basic(password="wrong"), basic(user="someone"), "Bearer x", "Basic !!!"):
        status, _, _ = http_get(desktop.port, "/", {"Authorization": auth})
        assert status == 401, auth
    status, _, _ = ws_upgrade(desktop.port, auth=basic(password="wrong"))
    assert status == 401


def test_web_client_is_served(desktop):
    auth = {"Authorization": basic()}
    for path in ("/", "/vnc.html", "/vnc.html?path=desktop/abc/websockify&autoconnect=1&resize=remote"):
        status, headers, body = http_get(desktop.port, path, auth)
        assert status == 200, path
        assert b"noVNC" in body
        assert headers.get("connection", "").lower() == "close"
    status, _, body = http_get(desktop.port, "/core/rfb.js", auth)
    assert status == 200
    assert b'options.wsProtocols || ["binary"]' in body
    status, _, _ = http_get(desktop.port, "/core/", auth)  # no directory listings
    assert status == 404


def test_upgrade_without_origin_is_refused(desktop):
    status, _, ws = ws_upgrade(desktop.port, origin=None)
    assert status != 101 and status >= 400 and ws is None


def test_upgrade_without_subprotocol_is_refused(desktop):
    status, _, ws = ws_upgrade(desktop.port, protocol=None)
    assert status != 101 and status >= 400 and ws is None


def test_upgrade_echoes_first_protocol_and_speaks_rfb(desktop):
    headers, rfb = open_rfb(desktop.port)
    try:
        assert headers.get("sec-websocket-protocol") == "binary"
        assert rfb.version == b"RFB 003.008\n"
        assert 1 in rfb.security_types and rfb.security_result == 0
        assert (rfb.width, rfb.height) == (1280, 720) and rfb.server_depth == 24
        pixels = rfb.grab(1240, 680, 8, 8)  # bottom right corner: desktop background
        assert set(pixels.values()) == {BACKGROUND}
    finally:
        rfb.ws.close()


def test_keyboard_input_reaches_the_xterm(desktop):
    _, rfb = open_rfb(desktop.port)
    try:
        # xterm: white, placed at (64, 36), 89x25 cells of 10x20 px; covers the screen centre
        # (where the pointer is, so it has the keyboard focus; the pointer is drawn at 640,360).
        deadline = time.monotonic() + 10
        while rfb.grab(600, 300, 1, 1)[(600, 300)] != (255, 255, 255):
            assert time.monotonic() < deadline, "xterm did not appear"
            time.sleep(0.1)
        region = (66, 38, 600, 120)  # first rows of the terminal: banner, prompt, typed text
        before = rfb.grab(*region)
        for ch in "echo typed-through-vnc":
            rfb.key(ord(ch))
        deadline = time.monotonic() + 5
        while rfb.grab(*region) == before:
            assert time.monotonic() < deadline, "typed keys did not change the xterm"
            time.sleep(0.1)
    finally:
        rfb.ws.close()


def test_environment_is_honoured_and_xvnc_death_stops_the_container(client):
    d = Desktop(client, password="other-pw", VNC_RESOLUTION="800x600", VNC_COL_DEPTH="16",
                NO_VNC_PORT="6902")
    try:
        _, rfb = open_rfb(d.port, password="other-pw")
        assert (rfb.width, rfb.height) == (800, 600)
        assert rfb.server_depth == 16
        for pixel in rfb.grab(780, 580, 4, 4).values():  # background, within RGB565 precision
            assert all(abs(c - e) <= 8 for c, e in zip(pixel, BACKGROUND, strict=False)), pixel
        rfb.ws.close()
        status, _, _ = http_get(d.port, "/", {"Authorization": basic()})
        assert status == 401  # the default test password no longer works
        d.container.exec_run(["sh", "-c", "kill $(cat /tmp/.X1-lock)"])
        result = d.container.wait(timeout=10)
        assert result["StatusCode"] != 0
    finally:
        d.remove()
