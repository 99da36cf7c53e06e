"""Who the user is: the identity every other part depends on, and the authenticator interface.

Implementations: local accounts (local.py), OpenID Connect (oidc.py), trusted proxy headers
(header.py); roles.py turns groups into a role.
"""

from __future__ import annotations

import attr
from twisted.internet.defer import Deferred
from zope.interface import Interface

ADMIN, TEACHER, PUPIL = "admin", "teacher", "pupil"


@attr.s(frozen=True, auto_attribs=True)
class Identity:
    """A signed-in person: a stable id (never the display name), a name to show, groups, role."""

    user_id: str
    display_name: str
    groups: frozenset[str]
    role: str = PUPIL


class IPasswordAuthenticator(Interface):
    """Checks a user name and password typed into the relay's own login page."""

    def authenticate(username: str, password: str) -> Deferred[Identity | None]:
        """The identity for these credentials, or None when they are wrong."""
