"""The relay's root web resource: sign-in pages, the dashboard, /api/ and the /desktop/ID/ routes.

/desktop/ID/websockify goes to the Autobahn bridge (relay/websocket.py); everything else under
/desktop/ID/ to the asset relay (relay/assets.py); both only after DesktopAccess said yes.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any
from urllib.parse import quote, urlencode

from autobahn.twisted.resource import WebSocketResource
from klein import Klein
from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.static import File

from ..auth import IPasswordAuthenticator
from ..auth.throttle import LoginThrottle
from ..relay.assets import AssetRelay
from ..relay.websocket import CLOSE_SIGNED_OUT, DesktopBridgeFactory
from .access import DesktopAccess
from .api import UserAPI
from .guard import RequestGuard
from .responses import Problem, problem_response, redirect, render_page


def _safe_next(target: str | None) -> str:
    """Only same-site paths are followed after sign-in (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def client_url(session_id: str) -> str:
    """The web client's address for a session, with its WebSocket path kept under the prefix."""
    query = urlencode({"path": f"desktop/{session_id}/websockify", "autoconnect": "1",
                       "resize": "remote", "reconnect": "1"})
    return f"/desktop/{session_id}/?{query}"


class RelayWeb:
    """Klein routes for pages and desktops; the user API is mounted at /api/."""

    app = Klein()
    _log = Logger()

    def __init__(
        self,
        *,
        guard: RequestGuard,
        authenticator: IPasswordAuthenticator,
        throttle: LoginThrottle,
        api: UserAPI,
        access: DesktopAccess,
        assets: AssetRelay,
        bridges: DesktopBridgeFactory,
    ) -> None:
        self._guard = guard
        self._authenticator = authenticator
        self._throttle = throttle
        self._api = api.app.resource()
        self._access = access
        self._assets = assets
        self._bridges = bridges
        self._websocket = WebSocketResource(bridges)
        self._static = File(str(files("desktop_relay.web").joinpath("static")))

    @app.handle_errors(Problem)
    def _problem(self, request: IRequest, failure: Any) -> bytes:
        return problem_response(request, failure.value)

    @app.handle_errors(Exception)
    def _unexpected(self, request: IRequest, failure: Any) -> bytes:
        self._log.failure("unexpected error answering {path}", failure, path=request.path.decode())
        return problem_response(request, Problem(500, "internal-error", "Internal error"))

    @app.route("/api/", branch=True)
    def api(self, request: IRequest):  # type: ignore[no-untyped-def]
        return self._api

    @app.route("/static/", branch=True)
    def static(self, request: IRequest):  # type: ignore[no-untyped-def]
        return self._static

    @app.route("/", methods=["GET"])
    @inlineCallbacks
    def dashboard(self, request: IRequest):  # type: ignore[no-untyped-def]
        web = yield self._guard.sessions.current(request)
        if web is None:
            return redirect(request, "/login")
        return render_page(request, "dashboard.html", name=web.display_name)

    @app.route("/login", methods=["GET"])
    def login_form(self, request: IRequest) -> bytes:
        target = _safe_next(_arg(request, b"next"))
        return render_page(request, "login.html", next=target, message="", username="")

    @app.route("/login", methods=["POST"])
    @inlineCallbacks
    def login(self, request: IRequest):  # type: ignore[no-untyped-def]
        self._guard.require_same_origin(request)
        username = (_arg(request, b"username") or "").strip()
        password = _arg(request, b"password") or ""
        target = _safe_next(_arg(request, b"next"))
        address = self._guard.client_address(request)
        wait = self._throttle.retry_after(username, address)
        if wait > 0:
            self._log.warn("login for {user} from {address} throttled", user=username, address=address)
            request.setHeader(b"Retry-After", str(int(wait) + 1).encode())
            return render_page(request, "login.html", 429, next=target, username=username,
                               message=f"Too many failed attempts. Try again in {int(wait) + 1} seconds.")
        identity = yield self._authenticator.authenticate(username, password)
        if identity is None:
            self._throttle.failed(username, address)
            self._log.info("failed login for {user} from {address}", user=username, address=address)
            return render_page(request, "login.html", 401, next=target, username=username,
                               message="Wrong user name or password.")
        self._throttle.succeeded(username, address)
        yield self._guard.sessions.begin(request, identity)
        self._log.info("{user} signed in from {address}", user=identity.user_id, address=address)
        return redirect(request, target)

    @app.route("/logout", methods=["POST"])
    @inlineCallbacks
    def logout(self, request: IRequest):  # type: ignore[no-untyped-def]
        self._guard.require_same_origin(request)
        web = yield self._guard.sessions.end(request)
        if web is not None:
            closed = self._bridges.close_user(web.user_id, CLOSE_SIGNED_OUT, "signed out")
            self._log.info("{user} signed out; {count} desktop connection(s) closed",
                           user=web.user_id, count=closed)
        return redirect(request, "/login")

    @app.route("/desktop/<session_id>", methods=["GET", "HEAD"])
    def desktop_without_slash(self, request: IRequest, session_id: str) -> bytes:
        return redirect(request, f"/desktop/{quote(session_id)}/", 301)

    @app.route("/desktop/<session_id>/websockify")
    def desktop_websocket(self, request: IRequest, session_id: str):  # type: ignore[no-untyped-def]
        if (request.getHeader(b"upgrade") or b"").lower() != b"websocket":
            raise Problem(400, "websocket-expected", "WebSocket upgrade expected",
                          "This address only takes WebSocket connections.")
        # twisted.web would time this connection out as an idle HTTP request once the bridge
        # owns it; the bridge's own pings keep it alive instead.
        request.channel.setTimeout(None)
        # The bridge's onConnect checks session, ownership and Origin before anything is opened.
        return self._websocket

    @app.route("/desktop/<session_id>/", branch=True)
    @inlineCallbacks
    def desktop_files(self, request: IRequest, session_id: str):  # type: ignore[no-untyped-def]
        entry = not request.postpath or request.postpath == [b""]
        web = yield self._guard.sessions.current(request)
        if web is None:
            if entry:
                return redirect(request, "/login?" + urlencode({"next": f"/desktop/{session_id}/"}))
            raise Problem(401, "not-signed-in", "Not signed in", "Sign in first.")
        origin = request.getHeader(b"origin")
        if origin is not None and not self._guard.origin_allowed(origin.decode("latin-1")):
            raise Problem(403, "origin-refused", "Origin refused")
        backend = yield self._access.backend_for(web, session_id)
        if entry and not request.args.get(b"path"):
            return redirect(request, client_url(session_id), 302)
        path = b"/".join(request.postpath).decode("utf-8", "replace")
        return (yield self._assets.relay(request, backend, path))


def _arg(request: IRequest, name: bytes) -> str | None:
    values = request.args.get(name)
    return values[0].decode("utf-8", "replace") if values else None
