"""Which homes a user sees in the files panel, and what each one's files container mounts.

A user's homes are those of the desktops they may start (one per home key: desktops of one
family share it), each with the shares the user may see in those desktops, mounted read-only
where the desktops have them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attr

from ..config import DesktopType, ShareSettings
from ..engine.interface import Mount
from ..homes import Home, home_for
from ..homes.mounts import home_quota, share_mount


@attr.s(frozen=True, auto_attribs=True)
class FilesPlace:
    """One home as the files panel shows it, with what its files container needs."""

    home: Home
    # The first desktop (by name) using this home: its title names the home, its image runs
    # the files container, so the container's user and tools are the desktop's own.
    title: str
    image: str
    # The smallest home_quota among the desktops using this home (None: no limit).
    quota: int | None
    shares: tuple[Mount, ...]

    @property
    def mounts(self) -> tuple[Mount, ...]:
        return (self.home.mount, *self.shares)

    @property
    def share_targets(self) -> tuple[str, ...]:
        return tuple(share.target for share in self.shares)


def places_for(
    instance: str, user_id: str, groups: frozenset[str], desktops: Iterable[DesktopType],
    shares: Mapping[str, ShareSettings],
) -> dict[str, FilesPlace]:
    """The user's homes by key, for the desktops they may start (`desktops`, already filtered)."""
    by_key: dict[str, list[tuple[DesktopType, Home]]] = {}
    for desktop in sorted(desktops, key=lambda d: d.name):
        home = home_for(instance, desktop, user_id)
        if home is not None:
            by_key.setdefault(home.key, []).append((desktop, home))
    places = {}
    for key, using in by_key.items():
        first, home = using[0]
        mounts: dict[str, Mount] = {}
        for share in sorted(shares.values(), key=lambda s: s.name):
            if not share.allows(user_id, groups):
                continue
            if any(not share.desktops or desktop.name in share.desktops for desktop, _ in using):
                # Where the first desktop has it: the files container mounts the home there too.
                mount = share_mount(share, first)
                mounts.setdefault(mount.target, mount)
        places[key] = FilesPlace(
            home=home, title=first.title, image=first.image, quota=home_quota(key, (d for d, _ in using)),
            shares=tuple(mounts.values()),
        )
    return places
