"""Who is calling the admin API: a script with a bearer token (read or write scope) or an admin
with their web session. Everyone else is told there is nothing here (404), so pupils and
teachers do not learn the API exists; a wrong or revoked token is told so (401)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any
from weakref import WeakKeyDictionary

import attr
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from ...auth import ADMIN
from ...auth.websessions import token_hash
from ...i18n import N_
from ...store import SQLiteStore
from ..guard import RequestGuard
from ..responses import Problem

READ, WRITE = "read", "write"
SCOPES = (READ, WRITE)
# A token's last use is written at most this often: a script polling every second is not a
# database write per call.
TOUCH_INTERVAL = 60.0


@attr.s(frozen=True, auto_attribs=True)
class AdminCaller:
    """An admin call's caller: the audit's actor and whether it may change anything."""

    name: str  # "user:<user_id>" or "token:<token name>" — the audit's actor
    can_write: bool


def not_found() -> Problem:
    """The answer to anyone who is not an admin, the same as for a path that does not exist."""
    return Problem(404, "no-such-page", N_("Not Found"))


def _invalid_token() -> Problem:
    problem = Problem(401, "invalid-token", N_("Invalid token"), N_("The bearer token is wrong or has been revoked."))
    problem.headers[b"WWW-Authenticate"] = b'Bearer realm="desktop-relay", error="invalid_token"'
    return problem


@attr.s(frozen=True, auto_attribs=True)
class _Identified:
    caller: AdminCaller
    by_token: bool


class AdminAuth:
    """Answers 'which admin is this, and may they change things' for every admin route."""

    _log = Logger()

    def __init__(self, store: SQLiteStore, guard: RequestGuard, clock: IReactorTime) -> None:
        self._store = store
        self._guard = guard
        self._clock = clock
        # The mount and the route both ask; the token or web session is looked up once per request.
        self._known: WeakKeyDictionary[IRequest, _Identified] = WeakKeyDictionary()

    def caller(self, request: IRequest) -> Deferred[AdminCaller]:
        """Any admin call. Bearer token (Authorization: Bearer <token>): valid -> its scope;
        wrong or revoked -> Problem 401 (WWW-Authenticate: Bearer). No token: the web session
        must be of a member of [roles] admin_groups (role 'admin'); anyone else, signed in or
        not -> Problem 404 (no-such-page), so pupils and teachers do not learn the API exists."""
        return self._identify(request).addCallback(lambda known: known.caller)

    @inlineCallbacks
    def writer(self, request: IRequest) -> Generator[Deferred[Any], Any, AdminCaller]:
        """A call that changes something: as caller(), plus the same-origin check for web
        sessions (RequestGuard.require_same_origin), and a read-only token -> Problem 403
        (insufficient-scope)."""
        known = yield self._identify(request)
        if not known.by_token:
            self._guard.require_same_origin(request)
        elif not known.caller.can_write:
            raise Problem(403, "insufficient-scope", N_("Read-only token"),
                          N_("This token may only read; changes need a token with the write scope."))
        return known.caller

    def _identify(self, request: IRequest) -> Deferred[_Identified]:
        known = self._known.get(request)
        if known is not None:
            return succeed(known)
        d = self._by_token(request) if _bearer(request) is not None else self._by_web_session(request)

        def remember(known: _Identified) -> _Identified:
            self._known[request] = known
            return known

        return d.addCallback(remember)

    @inlineCallbacks
    def _by_token(self, request: IRequest) -> Generator[Deferred[Any], Any, _Identified]:
        presented = _bearer(request)
        token = (yield self._store.admin_token_by_hash(token_hash(presented))) if presented else None
        if token is None or token.revoked is not None:
            self._log.warn(
                "admin API: {why} bearer token from {address} for {method} {path}",
                why="revoked" if token is not None else "unknown", address=self._guard.client_address(request),
                method=request.method.decode("latin-1"), path=request.path.decode("utf-8", "replace"),
            )
            raise _invalid_token()
        now = self._clock.seconds()
        if token.last_used is None or now - token.last_used >= TOUCH_INTERVAL:
            yield self._store.touch_admin_token(token.name, now)
        return _Identified(AdminCaller(f"token:{token.name}", token.scope == WRITE), by_token=True)

    @inlineCallbacks
    def _by_web_session(self, request: IRequest) -> Generator[Deferred[Any], Any, _Identified]:
        web = yield self._guard.sessions.current(request)
        if web is None or web.role != ADMIN:
            raise not_found()
        return _Identified(AdminCaller(f"user:{web.user_id}", True), by_token=False)


def _bearer(request: IRequest) -> str | None:
    """The token of an `Authorization: Bearer` header ("" when the scheme is there but no token);
    None without one. Other schemes are not ours and are ignored."""
    header = request.getHeader(b"authorization")
    if header is None:
        return None
    scheme, _, token = header.decode("latin-1").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()
