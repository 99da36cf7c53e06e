"""websockify 0.10 auth plugin that makes websockify answer like KasmVNC.

Used as ``websockify --web-auth --auth-plugin kasm_auth.KasmAuth``:
- HTTP Basic auth ``kasm_user:$VNC_PW`` on every request (web files too);
  missing or wrong credentials -> 401 with ``WWW-Authenticate: Basic realm="Websockify"``.
- A WebSocket upgrade without ``Origin``/``Sec-WebSocket-Origin`` or without
  ``Sec-WebSocket-Protocol`` is refused with 404 (KasmVNC never answers it with 101).
- The first offered subprotocol is echoed (KasmVNC does that; websockify only knows ``binary``).
- Plain responses get KasmVNC's COEP/COOP headers and ``Connection: close``; no directory listings.
"""
import base64
import hmac
import os

from websockify import websockifyserver
from websockify.auth_plugins import AuthenticationError

_EMPTY = {"Content-Length": "0"}


def _first_protocol(self, protocols):
    first = protocols[0].strip() if protocols else ""
    return "" if first == "base64" else first  # text frames are not supported: refuse


websockifyserver.CompatibleWebSocket.select_subprotocol = _first_protocol
_end_headers = websockifyserver.WebSockifyRequestHandler.end_headers


def _kasm_end_headers(self):
    self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
    self.send_header("Cross-Origin-Opener-Policy", "same-origin")
    if not any(h.lower().startswith(b"connection:") for h in getattr(self, "_headers_buffer", [])):
        self.send_header("Connection", "close")  # KasmVNC: one request per connection
    self.close_connection = True
    _end_headers(self)


websockifyserver.WebSockifyRequestHandler.end_headers = _kasm_end_headers
# No directory listings (websockify 0.10 has no --file-only option).
websockifyserver.WebSockifyRequestHandler.list_directory = lambda self, path: self.send_error(404)


class KasmAuth:
    def __init__(self, src=None):
        password = src if src else os.environ.get("VNC_PW", "vncpassword")
        self.expected = f"kasm_user:{password}".encode()  # KasmVNC compares the raw bytes

    def authenticate(self, headers, target_host, target_port):
        value = headers.get("Authorization", "")
        try:
            given = base64.b64decode(value[6:], validate=True) if value[:6].lower() == "basic " else b""
        except ValueError:
            given = b""
        if not hmac.compare_digest(given, self.expected):
            raise AuthenticationError(
                response_code=401, response_msg="Unauthorized",
                response_headers=dict(_EMPTY, **{"WWW-Authenticate": 'Basic realm="Websockify"'}))
        if headers.get("Upgrade", "").lower() == "websocket":
            origin = headers.get("Origin") or headers.get("Sec-WebSocket-Origin")
            if not origin or not headers.get("Sec-WebSocket-Protocol", "").strip():
                raise AuthenticationError(response_code=404, response_msg="Not Found",
                                          response_headers=_EMPTY)
