"""Request checks shared by every route: who is signed in, same-origin writes, the client address."""

from __future__ import annotations

import ipaddress
from collections.abc import Generator, Sequence
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.web.iweb import IRequest

from ..auth import Identity
from ..auth.header import address_in
from ..auth.websessions import WebSessions
from ..i18n import N_
from ..store import WebSession
from .responses import Problem

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def identity_of(web: WebSession) -> Identity:
    """The identity a web session stands for."""
    return Identity(web.user_id, web.display_name, web.groups, web.role)


class RequestGuard:
    """Answers 'who is this' and 'may this request change anything' for the web routes."""

    def __init__(self, sessions: WebSessions, public_origin: str, trusted_proxies: Sequence[Network]) -> None:
        self.sessions = sessions
        self._origin = public_origin
        self._trusted = tuple(trusted_proxies)

    @inlineCallbacks
    def signed_in(self, request: IRequest) -> Generator[Deferred[Any], Any, WebSession]:
        """The request's web session; Problem 401 when there is none."""
        web = yield self.sessions.current(request)
        if web is None:
            raise Problem(401, "not-signed-in", N_("Not signed in"), N_("Sign in first."))
        return web

    def origin_allowed(self, origin: str | None) -> bool:
        """Whether a request's Origin is the relay's own public origin."""
        return origin is not None and origin.rstrip("/") == self._origin

    def require_same_origin(self, request: IRequest) -> None:
        """Refuse a state-changing request that did not come from our own pages (CSRF).

        Browsers send Origin on every cross-origin request and on same-origin POST/DELETE,
        so a missing or foreign Origin means the request was not made by our page.
        """
        origin = request.getHeader(b"origin")
        if not self.origin_allowed(origin.decode("latin-1") if origin else None):
            raise Problem(
                403, "cross-origin-request", N_("Request from another site refused"),
                N_("This request must come from the relay's own pages."),
            )

    def client_address(self, request: IRequest) -> str:
        """The browser's address: X-Forwarded-For is believed only from configured proxies."""
        forwarded = request.getHeader(b"x-forwarded-for")
        return self.address_behind(
            getattr(request.getClientAddress(), "host", "unknown"),
            forwarded.decode("latin-1") if forwarded else None,
        )

    def address_behind(self, peer: str, forwarded: str | None) -> str:
        """The client's address given the connection's peer and its X-Forwarded-For, if any."""
        if not self._is_trusted(peer) or not forwarded:
            return peer
        # Walk from the nearest hop outward and take the first address we do not trust.
        for hop in reversed([h.strip() for h in forwarded.split(",")]):
            if not self._is_trusted(hop):
                return hop
        return peer

    def _is_trusted(self, address: str) -> bool:
        return address_in(address, self._trusted)
