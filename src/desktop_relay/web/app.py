"""The relay's root web resource: sign-in pages, the dashboard, /api/admin/, /api/ and the
/desktop/ID/ routes.

Sign-in is one of three methods ([auth] method): the relay's own form (local accounts), the
OpenID Connect code flow (/login → provider → /login/callback), or headers set by a trusted
proxy. Whatever the method, it ends in a web session carrying the user's groups and role.

/desktop/ID/ is the relay's own session page (a bar over the web client in a frame);
/desktop/ID/websockify goes to the Autobahn bridge (relay/bridge/); everything else under
/desktop/ID/, the client's own address /desktop/ID/?path=... included, to the asset relay
(relay/assets.py); all only after DesktopAccess said yes.
"""

from __future__ import annotations

import re
import secrets
from importlib.resources import files
from typing import Any
from urllib.parse import quote, urlencode

from autobahn.twisted.resource import WebSocketResource
from klein import Klein
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request
from twisted.web.static import File
from werkzeug.exceptions import HTTPException

from ..auth import ADMIN, TEACHER, Identity, IPasswordAuthenticator
from ..auth.header import TrustedHeaders
from ..auth.oidc import OpenIDSignIn, SignInFailed
from ..auth.roles import Roles
from ..auth.throttle import LoginThrottle
from ..i18n import LANGUAGES, N_, PluralText, Text
from ..lifecycle import DesktopSessions
from ..lifecycle.reasons import SIGNED_OUT
from ..metrics import RelayMetrics
from ..relay.assets import AssetRelay
from ..relay.bridge import CLOSE_SIGNED_OUT, DesktopBridgeFactory
from ..store import SeenUser, SQLiteStore, WebSession
from .access import DesktopAccess
from .admin import AdminAPI
from .admin.auth import not_found
from .api import UserAPI, client_url
from .guard import RequestGuard
from .pages import Pages
from .responses import (
    Problem,
    problem_response,
    redirect,
    routing_problem_response,
    unexpected_error_response,
)

# How the sign-in methods are named in the log; the key is their name in the audit and the metrics.
_METHOD_WORDS = {"local": "a local account", "oidc": "OpenID Connect", "header": "trusted headers"}
# The audit's actor for a failed sign-in that named no one (OpenID Connect, trusted headers).
UNKNOWN_ACTOR = "unknown"
# Attempted user names longer than this are cut in the audit trail (anyone can type them).
AUDIT_NAME_LENGTH = 200


def failure_reason(failure: SignInFailed) -> str:
    """A failed sign-in's reason for the audit trail: its kind, as a stable code."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", type(failure).__name__).lower()


def _safe_next(target: str | None) -> str:
    """Only same-site paths are followed after sign-in (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


class DecodablePaths(Resource):
    """The site's root: refuses a path that is not UTF-8 once percent-decoded (/api/sessions/%FF),
    and a Host header that is not UTF-8.

    Klein cannot route either: it answers a text/html 400 of its own and logs a traceback,
    before any of our error handlers run. Here they get a problem body and one warning line.
    """

    isLeaf = True
    _log = Logger()

    def __init__(self, routes: IResource) -> None:
        super().__init__()
        self._routes = routes

    def render(self, request: IRequest) -> bytes | int:
        method, path = request.method.decode("ascii", "replace"), request.path.decode("ascii", "replace")
        try:
            b"/".join(request.postpath or []).decode("utf-8")
        except UnicodeDecodeError:
            self._log.warn("refused {method} {path}: the path is not UTF-8", method=method, path=path)
            return problem_response(request, Problem(400, "invalid-path", N_("Invalid path"),
                                                     N_("The address is not valid percent-encoded UTF-8.")))
        try:
            request.getRequestHostname().decode("utf-8")
        except UnicodeDecodeError:
            self._log.warn("refused {method} {path}: the Host header is not UTF-8", method=method, path=path)
            return problem_response(request, Problem(400, "invalid-host", N_("Invalid Host header"),
                                                     N_("The Host header is not UTF-8.")))
        return self._routes.render(request)


class RelayWeb:
    """Klein routes for pages and desktops; the admin API is mounted at /api/admin/, the user API at /api/."""

    app = Klein()
    _log = Logger()

    def __init__(
        self,
        *,
        guard: RequestGuard,
        roles: Roles,
        authenticator: IPasswordAuthenticator | None = None,
        throttle: LoginThrottle,
        oidc: OpenIDSignIn | None = None,
        headers: TrustedHeaders | None = None,
        sign_in_timeout: float = 600,
        api: UserAPI,
        access: DesktopAccess,
        assets: AssetRelay,
        bridges: DesktopBridgeFactory,
        sessions: DesktopSessions,
        store: SQLiteStore,
        metrics: RelayMetrics | None = None,
        admin: AdminAPI | None = None,
        pages: Pages | None = None,
    ) -> None:
        if (authenticator, oidc, headers).count(None) != 2:
            raise ValueError("exactly one sign-in method: authenticator, oidc or headers")
        self._guard = guard
        self._roles = roles
        self._authenticator = authenticator
        self._throttle = throttle
        self._oidc = oidc
        self._headers = headers
        self._sign_in_timeout = sign_in_timeout
        # Binds a pending OpenID sign-in to the browser that began it (see auth/oidc.py).
        self._sign_in_cookie = b"__Host-desktop-relay-signin" if guard.sessions.secure else b"desktop-relay-signin"
        self._api = api.app.resource()
        self._admin = admin.app.resource() if admin is not None else None
        self._access = access
        self._assets = assets
        self._bridges = bridges
        self._sessions = sessions
        self._store = store
        self._metrics = metrics or RelayMetrics()
        self._websocket = WebSocketResource(bridges)
        self._static = File(str(files("desktop_relay.web").joinpath("static")))
        self._pages = pages or Pages(secure_cookies=guard.sessions.secure)

    def resource(self) -> IResource:
        """The site's root resource: these routes, behind the check of the path's encoding."""
        return DecodablePaths(self.app.resource())

    @app.handle_errors(Problem)
    def _problem(self, request: IRequest, failure: Any) -> bytes:
        return problem_response(request, failure.value)

    @app.handle_errors(HTTPException)
    def _routing(self, request: IRequest, failure: Any) -> bytes:
        return routing_problem_response(request, failure.value)

    @app.handle_errors(Exception)
    def _unexpected(self, request: IRequest, failure: Any) -> bytes:
        return unexpected_error_response(request, failure)

    @app.route("/api/admin/", branch=True)
    def admin_api(self, request: Request):  # type: ignore[no-untyped-def]
        if self._admin is None:
            raise not_found()
        # /api/admin/ itself: the admin API sees "/" (an empty path would be redirected to itself).
        request.postpath = request.postpath or [b""]
        return self._admin

    @app.route("/api/", branch=True)
    def api(self, request: IRequest):  # type: ignore[no-untyped-def]
        return self._api

    @app.route("/static/", branch=True)
    def static(self, request: IRequest):  # type: ignore[no-untyped-def]
        return self._static

    @app.route("/site/site.css", methods=["GET", "HEAD"])
    def site_css(self, request: IRequest) -> bytes:
        return self._pages.site_css(request)

    @app.route("/site/logo", methods=["GET", "HEAD"])
    def site_logo(self, request: IRequest) -> bytes:
        return self._pages.logo(request)

    @app.route("/lang/<code>", methods=["GET"])
    def switch_language(self, request: Request, code: str) -> bytes:
        # A plain link on every page, so the switch works without scripts; a choice of language
        # is no state worth protecting from other sites, so GET is fine.
        if code not in LANGUAGES:
            raise Problem(404, "no-such-language", N_("No such language"),
                          N_("The languages here are: {languages}."), values={"languages": ", ".join(LANGUAGES)})
        return self._pages.switch_language(request, code, _safe_next(_arg(request, b"next")))

    @app.route("/", methods=["GET"])
    @inlineCallbacks
    def dashboard(self, request: IRequest):  # type: ignore[no-untyped-def]
        web = yield self._guard.sessions.current(request)
        if web is None:
            return redirect(request, "/login")
        # Teachers (and admins, who may teach too) get the hand-outs and hand-ins section.
        return self._pages.render(request, "dashboard.html", name=web.display_name,
                                  teaches=web.role in (TEACHER, ADMIN))

    @app.route("/login", methods=["GET"])
    @inlineCallbacks
    def login_form(self, request: Request):  # type: ignore[no-untyped-def]
        target = _safe_next(_arg(request, b"next"))
        if self._oidc is not None:
            return (yield self._begin_oidc(request, target))
        if self._headers is not None:
            identity = self._headers.identity(request)
            if identity is None:
                yield self._audit_failure(request, UNKNOWN_ACTOR, "no-identity-headers")
                self._metrics.sign_in("header", "failed")
                return self._pages.render(
                    request, "signin-error.html", 401, title=Text("Not signed in"),
                    message=Text("Your sign-in did not reach this service. Please open it through the "
                                 "school's portal, or ask your administrator."),
                )
            return (yield self._signed_in(request, identity, target, "header"))
        return self._pages.render(request, "login.html", next=target, message="", username="")

    @inlineCallbacks
    def _begin_oidc(self, request: Request, target: str):  # type: ignore[no-untyped-def]
        assert self._oidc is not None
        # One random value per browser, kept across parallel sign-ins in several tabs.
        existing = request.getCookie(self._sign_in_cookie)
        browser = existing.decode("ascii", "replace") if existing else secrets.token_urlsafe(32)
        try:
            url = yield self._oidc.begin(browser, target)
        except SignInFailed as failure:
            return (yield self._sign_in_failed(request, failure))
        request.addCookie(
            self._sign_in_cookie, browser.encode("ascii"), path=b"/", httpOnly=True,
            secure=self._guard.sessions.secure, sameSite=b"lax", max_age=str(int(self._sign_in_timeout)),
        )
        request.setResponseCode(303)
        request.setHeader(b"Location", url.encode("utf-8"))
        request.setHeader(b"Cache-Control", b"no-store")
        return b""

    @app.route("/login/callback", methods=["GET"])
    @inlineCallbacks
    def login_callback(self, request: Request):  # type: ignore[no-untyped-def]
        if self._oidc is None:
            raise Problem(404, "no-such-page", N_("Not found"), N_("OpenID Connect sign-in is not configured."))
        browser = request.getCookie(self._sign_in_cookie)
        # twisted.web.http.Request declares args as None (its value before the request is parsed).
        args = {key.decode("utf-8", "replace"): values[0].decode("utf-8", "replace")
                for key, values in request.args.items() if values}  # type: ignore[attr-defined]
        try:
            identity, target = yield self._oidc.finish(args, browser.decode("ascii", "replace") if browser else None)
        except SignInFailed as failure:
            return (yield self._sign_in_failed(request, failure))
        return (yield self._signed_in(request, identity, target, "oidc"))

    @inlineCallbacks
    def _sign_in_failed(self, request: IRequest, failure: SignInFailed):  # type: ignore[no-untyped-def]
        self._metrics.sign_in("oidc", "failed")
        self._log.warn(
            "sign-in from {address} failed: {kind}: {detail}",
            address=self._guard.client_address(request), kind=type(failure).__name__, detail=failure.detail,
        )
        yield self._audit_failure(request, UNKNOWN_ACTOR, failure_reason(failure))
        if failure.status == 503:
            request.setHeader(b"Retry-After", b"60")
        return self._pages.render(request, "signin-error.html", failure.status, title=Text(failure.title),
                                  message=Text(failure.message))

    @inlineCallbacks
    def _signed_in(self, request: Request, identity: Identity, target: str, method: str):  # type: ignore[no-untyped-def]
        # Groups, and so the role, are taken afresh at every sign-in.
        identity = self._roles.assign(identity)
        yield self._guard.sessions.begin(request, identity)
        self._metrics.sign_in(method, "ok")
        now = self._sessions.now()
        # For the admin API: who has used the relay, and their groups (stop-by-group goes by them).
        yield self._store.user_signed_in(
            SeenUser(identity.user_id, identity.display_name, identity.groups, identity.role, now, now)
        )
        address = self._guard.client_address(request)
        self._log.info(
            "{user} signed in with {method} from {address} as {role}, groups {groups}",
            user=identity.user_id, method=_METHOD_WORDS[method], address=address,
            role=identity.role, groups=sorted(identity.groups),
        )
        yield self._store.audit(now, identity.user_id, "sign-in", identity.user_id, method, address)
        return redirect(request, target)

    def _audit_failure(self, request: IRequest, name: str, reason: str, address: str | None = None) -> Deferred[None]:
        """A failed sign-in's line in the audit trail: the name tried (if any), why, from where."""
        return self._store.audit(
            self._sessions.now(), name[:AUDIT_NAME_LENGTH], "sign-in-failed", name[:AUDIT_NAME_LENGTH], reason,
            address or self._guard.client_address(request),
        )

    @app.route("/login", methods=["POST"])
    @inlineCallbacks
    def login(self, request: Request):  # type: ignore[no-untyped-def]
        self._guard.require_same_origin(request)
        if self._authenticator is None:
            raise Problem(405, "password-sign-in-disabled", N_("Password sign-in is not offered"),
                          N_("Sign in through the school's sign-in service."))
        username = (_arg(request, b"username") or "").strip()
        password = _arg(request, b"password") or ""
        target = _safe_next(_arg(request, b"next"))
        address = self._guard.client_address(request)
        wait = self._throttle.retry_after(username, address)
        if wait > 0:
            self._log.warn("login for {user} from {address} throttled", user=username, address=address)
            yield self._audit_failure(request, username, "throttled", address)
            self._metrics.sign_in("local", "throttled")
            request.setHeader(b"Retry-After", str(int(wait) + 1).encode())
            seconds = int(wait) + 1
            return self._pages.render(
                request, "login.html", 429, next=target, username=username,
                message=PluralText("Too many failed attempts. Try again in {count} second.",
                                   "Too many failed attempts. Try again in {count} seconds.", seconds),
            )
        identity = yield self._authenticator.authenticate(username, password)
        if identity is None:
            self._throttle.failed(username, address)
            self._metrics.sign_in("local", "failed")
            self._log.info("failed login for {user} from {address}", user=username, address=address)
            yield self._audit_failure(request, username, "wrong-password", address)
            return self._pages.render(request, "login.html", 401, next=target, username=username,
                                      message=Text("Wrong user name or password."))
        self._throttle.succeeded(username, address)
        return (yield self._signed_in(request, identity, target, "local"))

    @app.route("/logout", methods=["POST"])
    @inlineCallbacks
    def logout(self, request: Request):  # type: ignore[no-untyped-def]
        self._guard.require_same_origin(request)
        web = yield self._guard.sessions.end(request)
        if web is not None:
            closed = self._bridges.close_user(web.user_id, CLOSE_SIGNED_OUT, "signed out")
            stopped = 0
            # Signed out of the last browser: nobody can reach the desktops any more, so they go
            # now instead of holding a container until the disconnect grace or idle timeout.
            if (yield self._store.count_web_sessions(web.user_id)) == 0:
                stopped = yield self._sessions.stop_all_of(
                    web.user_id, web.user_id, SIGNED_OUT, N_("Stopped because you signed out.")
                )
            self._log.info("{user} signed out; {count} desktop connection(s) closed, {stopped} desktop(s) stopped",
                           user=web.user_id, count=closed, stopped=stopped)
        return redirect(request, "/login")

    @app.route("/desktop/<session_id>", methods=["GET", "HEAD"])
    def desktop_without_slash(self, request: IRequest, session_id: str) -> bytes:
        return redirect(request, f"/desktop/{quote(session_id)}/", 301)

    @app.route("/desktop/<session_id>/websockify")
    def desktop_websocket(self, request: Request, session_id: str):  # type: ignore[no-untyped-def]
        if (request.getHeader(b"upgrade") or b"").lower() != b"websocket":
            raise Problem(400, "websocket-expected", N_("WebSocket upgrade expected"),
                          N_("This address only takes WebSocket connections."))
        # twisted.web would time this connection out as an idle HTTP request once the bridge
        # owns it; the bridge's own pings keep it alive instead.
        request.channel.setTimeout(None)
        # The bridge's onConnect checks session, ownership and Origin before anything is opened.
        return self._websocket

    @app.route("/desktop/<session_id>/", branch=True)
    @inlineCallbacks
    def desktop_files(self, request: Request, session_id: str):  # type: ignore[no-untyped-def]
        entry = not request.postpath or request.postpath == [b""]
        page = entry and not request.args.get(b"path")  # type: ignore[attr-defined]  # see login_callback
        cookie = request.getCookie(self._guard.sessions.cookie_name)
        token = cookie.decode("ascii", "replace") if cookie else None
        # The web client's dozens of files are each checked, but the first check's grant answers
        # the others (as it does the client's WebSocket): two store round trips a file otherwise.
        remembered = None if page else self._access.remembered(token, session_id)
        epoch = self._access.epoch
        if remembered is not None:
            web: WebSession | None = remembered[0]
        else:
            web = (yield self._guard.sessions.lookup(token)) if token else None
        if web is None:
            if entry:
                return redirect(request, "/login?" + urlencode({"next": f"/desktop/{session_id}/"}))
            raise Problem(401, "not-signed-in", N_("Not signed in"), N_("Sign in first."))
        origin = request.getHeader(b"origin")
        if origin is not None and not self._guard.origin_allowed(origin.decode("latin-1")):
            raise Problem(403, "origin-refused", N_("Origin refused"))
        if page:
            return (yield self._session_page(request, web, session_id, epoch))
        if remembered is not None:
            backend = remembered[1]
        else:
            backend = yield self._access.backend_for(web, session_id, remember_since=epoch)
        path = b"/".join(request.postpath or []).decode("utf-8", "replace")
        return (yield self._assets.relay(request, backend, path, session_id=session_id, user_id=web.user_id))

    @app.route("/look/<session_id>", methods=["GET", "HEAD"])
    def look_without_slash(self, request: IRequest, session_id: str) -> bytes:
        return redirect(request, f"/look/{quote(session_id)}/", 301)

    @app.route("/look/<session_id>/websockify")
    def look_websocket(self, request: Request, session_id: str):  # type: ignore[no-untyped-def]
        # A teacher's look: the bridge's resolver checks the look (DesktopAccess.look_for).
        return self.desktop_websocket(request, session_id)

    @app.route("/look/<session_id>/", branch=True)
    @inlineCallbacks
    def look_files(self, request: Request, session_id: str):  # type: ignore[no-untyped-def]
        """A teacher's look page, and the web client's files from the pupil's container for it."""
        entry = not request.postpath or request.postpath == [b""]
        web = yield self._guard.sessions.current(request)
        if web is None:
            if entry:
                return redirect(request, "/login?" + urlencode({"next": f"/look/{session_id}/"}))
            raise Problem(401, "not-signed-in", N_("Not signed in"), N_("Sign in first."))
        origin = request.getHeader(b"origin")
        if origin is not None and not self._guard.origin_allowed(origin.decode("latin-1")):
            raise Problem(403, "origin-refused", N_("Origin refused"))
        backend, pupil = yield self._access.look_for(web, session_id)
        if entry and not request.args.get(b"path"):  # type: ignore[attr-defined]  # see login_callback
            return self._pages.render(request, "look.html", session_id=session_id, pupil=pupil.display_name,
                                      client_url=look_client_url(session_id))
        path = b"/".join(request.postpath or []).decode("utf-8", "replace")
        return (yield self._assets.relay(request, backend, path, session_id=session_id, user_id=web.user_id))

    @inlineCallbacks
    def _session_page(self, request: IRequest, web: WebSession, session_id: str, epoch: int):  # type: ignore[no-untyped-def]
        """The relay's own page for a session: the bar, and the web client in a frame once ready
        (at once when it is ready now; the check's grant then serves the client's files)."""
        ready = False
        try:
            yield self._access.backend_for(web, session_id, remember_since=epoch)
            ready = True
        except Problem as problem:
            # Not found (or someone else's) and no longer allowed are answered as for any request;
            # any other refusal is about the session's state, which the page itself shows: queued,
            # starting, ended.
            if problem.status in (403, 404):
                raise
        return self._pages.render(request, "session.html", session_id=session_id,
                                  client_url=client_url(session_id) if ready else "")


def look_client_url(session_id: str) -> str:
    """The web client's address on a look page: view-only in the client too (the relay enforces
    it anyway), scaled rather than resizing the pupil's screen. KasmVNC's client, framed, would
    disconnect a teacher who only watches after its own idle time (see session.js)."""
    query = urlencode({"path": f"look/{session_id}/websockify", "autoconnect": "1", "view_only": "1",
                       "resize": "scale", "reconnect": "1", "shared": "1", "idle_disconnect": "100000"})
    return f"/look/{session_id}/?{query}"


def _arg(request: IRequest, name: bytes) -> str | None:
    values = request.args.get(name)
    return values[0].decode("utf-8", "replace") if values else None
