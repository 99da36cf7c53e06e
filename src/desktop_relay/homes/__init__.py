"""Pupils' homes: which Docker volume is whose, and where it is mounted.

A home is a named volume per user (and per desktop family or desktop, as `[desktop:NAME] home`
says), kept when containers go. This module names them; interface.py says what the engine does
with them (engine/docker_volumes.py for Docker, tests/fakes.py for tests). docs/homes.md is the
admin's view.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import attr

from ..config import DesktopType
from ..engine.interface import LABEL_HOME, LABEL_INSTANCE, LABEL_OWNER, Mount


@attr.s(frozen=True, auto_attribs=True)
class Home:
    """One user's home volume for one desktop family (or one desktop)."""

    volume: str
    owner: str
    # The desktop family ("default", ...) for per-user homes; "d-" + the desktop's name for
    # per-desktop ones. One user has one home per key.
    key: str
    instance: str
    # Who owns the files in it, and where desktops mount it.
    uid: int
    path: str

    @property
    def labels(self) -> Mapping[str, str]:
        return {LABEL_INSTANCE: self.instance, LABEL_OWNER: self.owner, LABEL_HOME: self.key}

    @property
    def mount(self) -> Mount:
        return Mount(source=self.volume, target=self.path, read_only=False, kind="volume")


def home_key(desktop: DesktopType) -> str | None:
    """Which of a user's homes a desktop mounts; None when it has none."""
    if desktop.home == "none":
        return None
    return desktop.home_family if desktop.home == "per-user" else "d-" + desktop.name


def home_volume_name(instance: str, key: str, owner: str) -> str:
    """The Docker volume of a user's home with this key."""
    # The owner's id is hashed into the name: ids may hold characters a volume name may not
    # (e-mail addresses, spaces), and `docker volume ls` need not show who a pupil is.
    digest = hashlib.sha256(owner.encode("utf-8")).hexdigest()[:16]
    return f"dr-{instance}-home-{key}-{digest}"


def home_for(instance: str, desktop: DesktopType, owner: str) -> Home | None:
    """The home a desktop of this type mounts for this user; None when it has none."""
    key = home_key(desktop)
    if key is None:
        return None
    return Home(
        volume=home_volume_name(instance, key, owner),
        owner=owner,
        key=key,
        instance=instance,
        uid=desktop.home_uid,
        path=desktop.home_path,
    )
