"""Who may reach which desktop: the one check behind every request and upgrade under /desktop/ID/,
and the one behind a teacher's look under /look/ID/.

Route by path, authorise by session: the id in the path only says which session is meant;
the signed-in user must own it, it must be ready, and the user must still be allowed that desktop.
A look needs instead that the session is ready and its owner a pupil the caller may see
(ClassScope.may_see, with the owner's groups at their last sign-in); anything else answers like a
session that does not exist. A look is never granted /desktop/ID/, nor the other way round.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from autobahn.websocket.types import ConnectionRequest
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..auth.classes import ClassScope
from ..auth.websessions import token_hash
from ..backend import Backend
from ..i18n import N_
from ..lifecycle import DesktopSessions
from ..relay.bridge import BridgeClosed, BridgeTarget, DesktopBridgeFactory, UpgradeRefused
from ..store import QUEUED, READY, STARTING, SeenUser, SQLiteStore, WebSession
from .grants import UpgradeGrants
from .guard import RequestGuard, identity_of
from .responses import Problem

# How long a granted upgrade is remembered at most; a stop or sign-out forgets it at once.
GRANT_TTL = 60.0


class DesktopAccess:
    """Decides whether a signed-in user may reach a desktop session, and where it is."""

    _log = Logger()

    def __init__(
        self, store: SQLiteStore, sessions: DesktopSessions, guard: RequestGuard, classes: ClassScope | None = None,
        control_mode: str = "off",
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._guard = guard
        self._classes = classes
        # teacher_control: "on" gives a look control from its start.
        self._control_mode = control_mode
        self.grants: UpgradeGrants | None = None

    def remember_grants(self, bridges: DesktopBridgeFactory, clock: IReactorTime, ttl: float = GRANT_TTL) -> None:
        """Remember granted upgrades for `ttl` seconds, forgotten at once when `bridges` closes
        their session's or user's connections and when their cookie's web session ends; these go
        together, so a grant can never outlive a stop or a sign-out."""
        self.grants = UpgradeGrants(clock, ttl, self._guard.sessions.valid)
        bridges.tell_revocations(self.grants)
        self._guard.sessions.tell_ended(self.grants.web_session_ended)

    @property
    def epoch(self) -> int:
        """Take this before looking a cookie up, for backend_for's `remember_since`."""
        return self.grants.epoch if self.grants is not None else 0

    def remembered(self, token: str | None, session_id: str | None) -> tuple[WebSession, Backend] | None:
        """The user and container a recent backend_for granted for this cookie and session, if
        any: what spares a web client's dozens of files and its reconnects two store round trips
        each. Only with both."""
        if self.grants is None or not token or not session_id:
            return None
        grant = self.grants.get(token_hash(token), session_id, self._sessions.desktops)
        return None if grant is None else (grant.web, grant.backend)

    @inlineCallbacks
    def backend_for(
        self, web: WebSession, session_id: str, remember_since: int | None = None,
    ) -> Generator[Deferred[Any], Any, Backend]:
        """The container behind session_id for this user, or a Problem saying why not. With
        `remember_since` (the epoch taken before `web` was looked up) the answer is remembered
        as a grant, unless access was revoked since."""
        session = yield self._store.get_session(session_id)
        # Someone else's session answers exactly like one that does not exist: ids are not
        # confirmed to people who do not own them.
        if session is None or session.owner != web.user_id:
            raise Problem(404, "no-such-session", N_("No such desktop session"),
                          N_("There is no desktop session with this address for you."))
        desktop = self._sessions.desktop(session.desktop)
        if desktop is None or not self._sessions.may_start(identity_of(web), desktop):
            raise Problem(403, "desktop-not-allowed", N_("Desktop not allowed"),
                          N_("You are no longer allowed to use this desktop."))
        if session.state in (QUEUED, STARTING):
            raise Problem(409, "session-not-ready", N_("Desktop still starting"),
                          N_("The desktop is still starting; try again in a moment."))
        backend = self._sessions.backend_of(session)
        if session.state != READY or backend is None:
            raise Problem(410, "session-ended", N_("Desktop session ended"),
                          N_("This desktop session is {state}; start a new one."), values={"state": session.state})
        if self.grants is not None and remember_since is not None:
            self.grants.grant(web, session_id, backend, self._sessions.desktops, remember_since)
        return backend

    @inlineCallbacks
    def look_for(self, web: WebSession, session_id: str) -> Generator[Deferred[Any], Any, tuple[Backend, SeenUser]]:
        """The container behind a pupil's session for a teacher (or admin) who may see that
        pupil, and the pupil; else the same 404 as for a session that does not exist."""
        missing = Problem(404, "no-such-session", N_("No such desktop session"),
                          N_("There is no desktop session with this address for you."))
        if self._classes is None:
            raise missing
        session = yield self._store.get_session(session_id)
        if session is None or session.owner == web.user_id or session.state != READY:
            raise missing
        owner = yield self._store.seen_user(session.owner)
        if owner is None or not self._classes.may_see(web.role, web.groups, owner.role, owner.groups):
            raise missing
        backend = self._sessions.backend_of(session)
        if backend is None:
            raise missing
        return backend, owner

    @inlineCallbacks
    def resolve_upgrade(self, request: ConnectionRequest) -> Generator[Deferred[Any], Any, BridgeTarget]:
        """The WebSocket bridge's resolver: check cookie, Origin and session of an upgrade."""
        kind, session_id = _session_id_from_path(request.path)
        web: WebSession | None = None
        if kind == "look":
            return (yield self._resolve_look(request, session_id))
        try:
            if not self._guard.origin_allowed(request.origin):
                raise Problem(403, "origin-refused", N_("Origin refused"),
                              N_("WebSocket from origin {origin} refused."), values={"origin": repr(request.origin)})
            token = _cookie(request.headers.get("cookie", ""), self._guard.sessions.cookie_name.decode())
            remembered = self.remembered(token, session_id)
            if remembered is not None:
                web, backend = remembered
            else:
                epoch = self.epoch
                web = (yield self._guard.sessions.lookup(token)) if token else None
                if web is None:
                    raise Problem(401, "not-signed-in", N_("Not signed in"), N_("Sign in first."))
                if session_id is None:
                    raise Problem(404, "no-such-session", N_("No such desktop session"))
                backend = yield self.backend_for(web, session_id, remember_since=epoch)
        except Problem as problem:
            # The bridge logs the refusal, once, with these fields.
            why = problem.detail or problem.title
            raise UpgradeRefused(problem.status, why, session=session_id,
                                 user=web.user_id if web is not None else None, why=why) from None
        address = self._guard.address_behind(_peer_host(request.peer), request.headers.get("x-forwarded-for"))
        assert session_id is not None  # there is no grant and no backend without one
        return BridgeTarget(backend=backend, session_id=session_id, user_id=web.user_id, address=address)

    @inlineCallbacks
    def _resolve_look(
        self, request: ConnectionRequest, session_id: str | None
    ) -> Generator[Deferred[Any], Any, BridgeTarget]:
        """A look's upgrade: cookie and Origin as for a desktop, then look_for; never a grant,
        so a look can never open the session's own /desktop/ID/ address."""
        web: WebSession | None = None
        try:
            if not self._guard.origin_allowed(request.origin):
                raise Problem(403, "origin-refused", N_("Origin refused"),
                              N_("WebSocket from origin {origin} refused."), values={"origin": repr(request.origin)})
            token = _cookie(request.headers.get("cookie", ""), self._guard.sessions.cookie_name.decode())
            web = (yield self._guard.sessions.lookup(token)) if token else None
            if web is None:
                raise Problem(401, "not-signed-in", N_("Not signed in"), N_("Sign in first."))
            if session_id is None:
                raise Problem(404, "no-such-session", N_("No such desktop session"))
            backend, owner = yield self.look_for(web, session_id)
        except Problem as problem:
            why = problem.detail or problem.title
            raise UpgradeRefused(problem.status, why, session=session_id,
                                 user=web.user_id if web is not None else None, why=f"look: {why}") from None
        address = self._guard.address_behind(_peer_host(request.peer), request.headers.get("x-forwarded-for"))
        return BridgeTarget(backend=backend, session_id=session_id, user_id=web.user_id, address=address,
                            looking_at=owner.user_id, viewer_name=web.display_name,
                            control=self._control_mode == "on")


class BridgeAudit:
    """Writes desktop connects and disconnects to the audit trail: who, which session, from where.

    The bridge's listener: told on the reactor, it must not wait, so the lines are written
    in the background and a failure to write one is logged.
    """

    _log = Logger()

    def __init__(self, store: SQLiteStore, clock: IReactorTime) -> None:
        self._store = store
        self._clock = clock

    def bridge_opened(self, target: BridgeTarget) -> None:
        """A browser is connected to its desktop."""
        self._write(target, "connect", "")

    def bridge_closed(self, target: BridgeTarget, closed: BridgeClosed) -> None:
        """A browser's connection to its desktop ended: both close codes, the bytes each way."""
        self._write(target, "disconnect", closed.audit_detail())

    def _write(self, target: BridgeTarget, action: str, detail: str) -> None:
        d = self._store.audit(self._clock.seconds(), target.user_id, action, target.session_id, detail, target.address)
        d.addErrback(lambda failure: self._log.failure(
            "cannot write the {action} of session {session} to the audit trail", failure,
            action=action, session=target.session_id,
        ))


def _peer_host(peer: str) -> str:
    """The address in Autobahn's peer descriptor: tcp4:192.0.2.1:52914, tcp6:::1:52914."""
    kind, _, rest = peer.partition(":")
    if kind in ("tcp4", "tcp6", "tcp"):
        return rest.rsplit(":", 1)[0].strip("[]")
    return peer


def _session_id_from_path(path: str) -> tuple[str, str | None]:
    """Whether an upgrade is a desktop's or a look's, and its session id (None: no valid path)."""
    parts = path.split("/")
    # /desktop/<id>/websockify, /look/<id>/websockify
    kind = "look" if len(parts) > 1 and parts[1] == "look" else "desktop"
    if len(parts) == 4 and parts[1] == kind and parts[2] and parts[3] == "websockify":
        return kind, parts[2]
    return kind, None


def _cookie(header: str, name: str) -> str | None:
    # Parsed by hand: SimpleCookie gives up on the whole header when any other cookie of the
    # site is malformed, which would lock users out for someone else's cookie.
    for pair in header.split(";"):
        key, sep, value = pair.strip().partition("=")
        if sep and key == name:
            return value
    return None
