"""Trusted-header sign-in: Apache (e.g. mod_auth_openidc) signs users in and names them in headers.

The headers are believed only on connections from the configured proxy addresses; from anywhere
else anyone could type them, so they are ignored and the attempt is logged.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from twisted.logger import Logger
from twisted.web.iweb import IRequest

from ..config import HeaderSettings
from . import Identity

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def address_in(address: str, networks: Sequence[Network]) -> bool:
    """Whether an IP address (text) lies in one of the networks; False for anything unparsable."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 on a dual-stack socket is 127.0.0.1
    return any(ip in network for network in networks)


class TrustedHeaders:
    """Reads the identity a trusted proxy put into a request's headers."""

    _log = Logger()

    def __init__(self, settings: HeaderSettings, proxies: Sequence[Network]) -> None:
        self._settings = settings
        self._proxies = tuple(proxies)

    def identity(self, request: IRequest) -> Identity | None:
        """The identity in the request's headers, or None (no headers, or not from a proxy)."""
        s = self._settings
        user = _header(request, s.user)
        peer = getattr(request.getClientAddress(), "host", "unknown")
        if not address_in(peer, self._proxies):
            if user is not None or _header(request, s.groups) is not None:
                self._log.warn(
                    "ignored sign-in headers from {peer}, which is not a trusted proxy (user {user!r})",
                    peer=peer, user=user,
                )
            return None
        if not user:
            return None
        groups = frozenset(
            g.strip() for g in (_header(request, s.groups) or "").split(s.separator) if g.strip()
        )
        return Identity(user, _header(request, s.name) or user, groups)


def _header(request: IRequest, name: str) -> str | None:
    value = request.getHeader(name.encode("ascii"))
    return value.decode("utf-8", "replace").strip() if value is not None else None
