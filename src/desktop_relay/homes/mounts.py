"""What a user's desktop container mounts: their home, read-write, and each share they may see,
read-only; and the quota a home is held to."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..config import DesktopType, ShareSettings
from ..engine.interface import Mount
from . import Home, home_key


def desktop_mounts(
    home: Home | None, desktop: DesktopType, shares: Mapping[str, ShareSettings],
    user_id: str, groups: frozenset[str],
) -> tuple[Mount, ...]:
    """The mounts of one user's container of this desktop: the home (if it has one), then the
    shares this desktop carries and this user may see, in configuration order."""
    mounts = [home.mount] if home is not None else []
    for share in shares.values():
        if share.desktops and desktop.name not in share.desktops:
            continue
        if not share.allows(user_id, groups):
            continue
        mounts.append(share_mount(share, desktop))
    return tuple(mounts)


def share_mount(share: ShareSettings, desktop: DesktopType) -> Mount:
    """A share, read-only, where containers of this desktop have it."""
    target = share.target_in(desktop)
    if share.path is not None:
        return Mount(source=str(share.path), target=target, read_only=True, kind="bind")
    assert share.volume is not None  # config sets exactly one of path and volume
    return Mount(source=share.volume, target=target, read_only=True, kind="volume")


def home_quota(key: str, desktops: Iterable[DesktopType]) -> int | None:
    """The quota of a user's home with this key: the smallest home_quota of the desktops that
    mount it (a home shared by a family of desktops is held to the strictest); None without one."""
    quotas = [d.home_quota for d in desktops if home_key(d) == key and d.home_quota is not None]
    return min(quotas) if quotas else None


def desktops_with_home(key: str, desktops: Iterable[DesktopType]) -> list[DesktopType]:
    """The desktops that mount a user's home of this key."""
    return [d for d in desktops if home_key(d) == key]
