"""Recently granted desktop upgrades, so that a browser reconnecting to its desktop is not asked
for two store round trips again; never a looser check than the store's.

A grant is the answer DesktopAccess gave for one cookie and one session. It is forgotten at once
- when the session ends or its user signs out (the bridge factory's close_session and close_user
  tell it, see Revocations),
- when its cookie's web session ends (WebSessions tells it: signed out, expired, or replaced by a
  new sign-in in the same browser),
- when relay.ini is reloaded (the desktops it was checked against are gone),
- when the web session would have expired,
and after `ttl` seconds in any case.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import attr
from twisted.internet.interfaces import IReactorTime

from ..backend import Backend
from ..store import WebSession

# More grants than this are a flood of distinct cookies, not reconnects: the oldest half goes.
MAX_GRANTS = 10_000


@attr.s(frozen=True, auto_attribs=True, slots=True)
class Grant:
    web: WebSession
    backend: Backend
    # The desktops mapping the grant was checked against; a reload replaces it.
    desktops: Mapping[str, object]
    until: float


class UpgradeGrants:
    """(cookie hash, session id) -> the grant, for `ttl` seconds at most."""

    def __init__(self, clock: IReactorTime, ttl: float, web_session_valid: Callable[[WebSession, float], bool]) -> None:
        self._clock = clock
        self._ttl = ttl
        self._valid = web_session_valid
        self._grants: dict[tuple[str, str], Grant] = {}
        # Counts revocations: a grant checked in the store before one is not remembered after
        # it, since the stop or sign-out may have come between the check and the remembering.
        self.epoch = 0

    def __len__(self) -> int:
        return len(self._grants)

    def get(self, token_hash: str, session_id: str, desktops: Mapping[str, object]) -> Grant | None:
        key = (token_hash, session_id)
        grant = self._grants.get(key)
        if grant is None:
            return None
        now = self._clock.seconds()
        if now >= grant.until or grant.desktops is not desktops or not self._valid(grant.web, now):
            del self._grants[key]
            return None
        return grant

    def grant(
        self, web: WebSession, session_id: str, backend: Backend, desktops: Mapping[str, object], checked_at: int
    ) -> None:
        """Remember a grant checked in the store when `epoch` was `checked_at`."""
        if checked_at != self.epoch:
            return
        if len(self._grants) >= MAX_GRANTS:
            for key in list(self._grants)[: MAX_GRANTS // 2]:
                del self._grants[key]
        self._grants[(web.token_hash, session_id)] = Grant(web, backend, desktops, self._clock.seconds() + self._ttl)

    # -- Revocations, told by the bridge factory -------------------------------------------

    def session_revoked(self, session_id: str) -> None:
        self.epoch += 1
        for key in [k for k in self._grants if k[1] == session_id]:
            del self._grants[key]

    def web_session_ended(self, token_hash: str) -> None:
        """A cookie stopped signing anyone in (signed out, expired, replaced at a new sign-in)."""
        self.epoch += 1
        for key in [k for k in self._grants if k[0] == token_hash]:
            del self._grants[key]

    def user_revoked(self, user_id: str) -> None:
        self.epoch += 1
        for key in [k for k, grant in self._grants.items() if grant.web.user_id == user_id]:
            del self._grants[key]
