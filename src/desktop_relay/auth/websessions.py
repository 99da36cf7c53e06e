"""Server-side web sessions: an opaque random cookie, its hash in the store, idle and absolute expiry."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Generator
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest
from twisted.web.server import Request

from ..store import SQLiteStore, WebSession
from . import Identity


def token_hash(token: str) -> str:
    """What the store keeps instead of the cookie value: a leaked database signs no one in."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


class WebSessions:
    """Creates, finds and ends signed-in browser sessions."""

    def __init__(
        self,
        store: SQLiteStore,
        clock: IReactorTime,
        *,
        secure: bool,
        idle: float,
        lifetime: float,
    ) -> None:
        self._store = store
        self._clock = clock
        self.secure = secure
        self._idle = idle
        self._lifetime = lifetime
        # The __Host- prefix makes browsers refuse the cookie unless it is Secure, has Path=/
        # and no Domain: no subdomain or plain-http page can plant or overwrite it.
        self.cookie_name = b"__Host-desktop-relay" if secure else b"desktop-relay"
        # Told the token hash of every session this object ends (see tell_ended).
        self._ended_listeners: list[Callable[[str], None]] = []

    def tell_ended(self, listener: Callable[[str], None]) -> None:
        """Have `listener` told the token hash of each web session ended here: signed out, expired
        on sight, or replaced by signing in again in the same browser."""
        self._ended_listeners.append(listener)

    @inlineCallbacks
    def _delete(self, hashed: str) -> Generator[Deferred[Any], Any, None]:
        yield self._store.delete_web_session(hashed)
        for listener in self._ended_listeners:
            listener(hashed)

    @inlineCallbacks
    def begin(self, request: Request, identity: Identity) -> Generator[Deferred[Any], Any, str]:
        """Sign this browser in as identity: store the session and set the cookie."""
        # A browser that signs in again gets a new id; the old one stops working (no fixation).
        previous = request.getCookie(self.cookie_name)
        if previous:
            yield self._delete(token_hash(previous.decode("ascii", "replace")))
        token = secrets.token_urlsafe(32)
        now = self._clock.seconds()
        yield self._store.add_web_session(
            WebSession(token_hash(token), identity.user_id, identity.display_name, identity.groups, now, now,
                       identity.role)
        )
        request.addCookie(
            self.cookie_name,
            token.encode("ascii"),
            path=b"/",
            httpOnly=True,
            secure=self.secure,
            sameSite=b"lax",
        )
        return token

    @inlineCallbacks
    def current(self, request: IRequest) -> Generator[Deferred[Any], Any, WebSession | None]:
        """The signed-in session of this request, or None (no cookie, unknown, or expired)."""
        cookie = request.getCookie(self.cookie_name)
        return (yield self.lookup(cookie.decode("ascii", "replace"))) if cookie else None

    @inlineCallbacks
    def lookup(self, token: str) -> Generator[Deferred[Any], Any, WebSession | None]:
        """The session a cookie value stands for, or None; expired ones are deleted on sight."""
        hashed = token_hash(token)
        session = yield self._store.get_web_session(hashed)
        if session is None:
            return None
        now = self._clock.seconds()
        if not self.valid(session, now):
            yield self._delete(hashed)
            return None
        # Writing last_seen on every request would be a write per asset; a minute is precise enough.
        if now - session.last_seen > 60:
            yield self._store.touch_web_session(hashed, now)
        return session

    def valid(self, session: WebSession, now: float) -> bool:
        """Whether a session is still within its idle and absolute expiry at `now`."""
        return now - session.last_seen <= self._idle and now - session.created <= self._lifetime

    @inlineCallbacks
    def end(self, request: Request) -> Generator[Deferred[Any], Any, WebSession | None]:
        """Sign this browser out: delete its session and expire the cookie."""
        session = yield self.current(request)
        if session is not None:
            yield self._delete(session.token_hash)
        request.addCookie(
            self.cookie_name, b"", path=b"/", httpOnly=True, secure=self.secure, sameSite=b"lax",
            max_age=b"0", expires=b"Thu, 01 Jan 1970 00:00:00 GMT",
        )
        return session

    def purge(self) -> Deferred[int]:
        """Delete expired sessions from the store."""
        now = self._clock.seconds()
        return self._store.purge_web_sessions(now - self._idle, now - self._lifetime)
