"""Homes as the APIs and pages show them: usage against the quota, which desktops mount a home,
and whether a running desktop holds it (then an admin may not delete it)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..homes import home_key
from ..homes.mounts import desktops_with_home, home_quota
from ..lifecycle import DesktopSessions
from ..store import HOLDING_STATES, DesktopSession, HomeRecord


def over_quota(usage: int | None, quota: int | None) -> bool:
    """Whether a home holds more than its quota (never before it was measured)."""
    return usage is not None and quota is not None and usage > quota


def home_view(record: HomeRecord, sessions: DesktopSessions) -> dict[str, Any]:
    """A user's home as they see it in GET /api/homes (the volume's name is the admin's business)."""
    quota = home_quota(record.key, sessions.desktops.values())
    return {
        "key": record.key,
        "desktops": [d.name for d in desktops_with_home(record.key, sessions.desktops.values())],
        "usage": record.usage_bytes,
        "measured_at": record.measured_at,
        "quota": quota,
        "over_quota": over_quota(record.usage_bytes, quota),
        "created": record.created,
        "last_used": record.last_used,
    }


def sessions_holding(key: str, owned: Iterable[DesktopSession], sessions: DesktopSessions) -> list[str]:
    """The ids of a user's sessions whose container has (or is about to have) this home mounted."""
    holding = []
    for session in owned:
        desktop = sessions.desktop(session.desktop)
        if session.state in HOLDING_STATES and desktop is not None and home_key(desktop) == key:
            holding.append(session.id)
    return holding


def session_home(session: DesktopSession, sessions: DesktopSessions,
                 records: Iterable[HomeRecord]) -> dict[str, Any] | None:
    """The home of a session's desktop with its usage against that desktop's quota, for the
    session page's warning; None for a desktop without a home."""
    desktop = sessions.desktop(session.desktop)
    key = home_key(desktop) if desktop is not None else None
    if desktop is None or key is None:
        return None
    record = next((r for r in records if r.key == key), None)
    usage = record.usage_bytes if record is not None else None
    return {"key": key, "usage": usage, "quota": desktop.home_quota,
            "over_quota": over_quota(usage, desktop.home_quota)}
