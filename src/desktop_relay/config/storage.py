"""The `[homes]` and `[share:NAME]` sections: where the pupils' homes and the school's shared
folders come from, and the limits of the files panel."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import attr

from .desktops import DesktopType
from .values import NAME, Reader, byte_size, duration, word_set


@attr.s(frozen=True, auto_attribs=True)
class HomesSettings:
    """The `[homes]` section."""

    # Host directories a [share:NAME] path may lie in; a share elsewhere stops start-up.
    share_roots: tuple[Path, ...] = ()
    # How often the homes' disk usage is measured (never per request: it walks the volumes).
    usage_interval: float = 10 * 60
    # The largest single upload through the files panel, in bytes.
    files_max_upload: int = 1024**3
    # How long a home's files container lives after the last files request.
    files_idle: float = 5 * 60


@attr.s(frozen=True, auto_attribs=True)
class ShareSettings:
    """One `[share:NAME]` section: a host directory or a Docker volume, mounted read-only."""

    name: str
    # Exactly one of path (a host directory) and volume (a Docker volume's name) is set.
    path: Path | None
    volume: str | None
    groups: frozenset[str]
    users: frozenset[str]
    # The desktops it is mounted into (empty: all of them).
    desktops: frozenset[str]
    # Where it appears: relative to the desktop's home_path, or absolute.
    mount: str

    def allows(self, user_id: str, groups: frozenset[str]) -> bool:
        """Whether a user with these groups sees this share ("*" admits everyone)."""
        return "*" in self.groups or user_id in self.users or bool(self.groups & groups)

    def target_in(self, desktop: DesktopType) -> str:
        """The share's path inside a container of this desktop."""
        return self.mount if self.mount.startswith("/") else f"{desktop.home_path}/{self.mount}"


HOMES_DEFAULTS = {
    "share_roots": "",
    "usage_interval": "10m",
    "files_max_upload": "1g",
    "files_idle": "5m",
}
SHARE_DEFAULTS: Mapping[str, str | None] = {
    "path": "",
    "volume": "",
    "groups": "",
    "users": "",
    "desktops": "",
    "mount": "",
}
# A Docker volume name, as the engine accepts it.
_VOLUME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def read_homes(reader: Reader) -> HomesSettings:
    k = HOMES_DEFAULTS
    roots = tuple(Path(part) for part in reader.value("homes", "share_roots", k, word_set))
    for root in roots:
        if not root.is_absolute():
            raise reader.fail("homes", "share_roots", f"{root} is not an absolute path")
    return HomesSettings(
        share_roots=tuple(sorted(roots)),
        usage_interval=reader.value("homes", "usage_interval", k, duration),
        files_max_upload=reader.value("homes", "files_max_upload", k, byte_size),
        files_idle=reader.value("homes", "files_idle", k, duration),
    )


def read_shares(
    reader: Reader, homes: HomesSettings, desktops: Mapping[str, DesktopType]
) -> Mapping[str, ShareSettings]:
    shares: dict[str, ShareSettings] = {}
    k = SHARE_DEFAULTS
    for section in reader.parser.sections():
        if not section.startswith("share:"):
            continue
        name = section.partition(":")[2]
        if not NAME.match(name):
            raise reader.fail(section, None, "share name must be lower-case letters, digits, '.', '_' or '-'")
        path_text = reader.raw(section, "path", k)
        volume = reader.raw(section, "volume", k) or None
        if bool(path_text) == bool(volume):
            raise reader.fail(section, "path", "set exactly one of path (a host directory) and volume")
        path = None
        if path_text:
            path = _share_path(reader, section, Path(path_text), homes)
        elif volume is not None and not _VOLUME.match(volume):
            raise reader.fail(section, "volume", f"{volume!r} is not a Docker volume name")
        groups = reader.value(section, "groups", k, word_set)
        users = reader.value(section, "users", k, word_set)
        if not groups and not users:
            raise reader.fail(section, "groups", "no one would see this share: name groups, users or *")
        wanted = reader.value(section, "desktops", k, word_set)
        unknown = sorted(wanted - desktops.keys())
        if unknown:
            raise reader.fail(section, "desktops", f"there is no [desktop:{unknown[0]}]")
        mount = reader.raw(section, "mount", k) or f"Shared/{name}"
        if ".." in mount.split("/") or mount in ("/", ""):
            raise reader.fail(section, "mount", f"{mount!r} must be a path without '..'")
        shares[name] = ShareSettings(
            name=name, path=path, volume=volume, groups=groups, users=users,
            desktops=wanted, mount=mount.rstrip("/"),
        )
    return MappingProxyType(shares)


def _share_path(reader: Reader, section: str, path: Path, homes: HomesSettings) -> Path:
    """A share's host directory: absolute, existing, and inside one of [homes] share_roots
    (symbolic links resolved first, so a link cannot lead out of them)."""
    if not path.is_absolute():
        raise reader.fail(section, "path", f"{path} is not an absolute path")
    if not homes.share_roots:
        raise reader.fail(section, "path", "host directories need [homes] share_roots naming where shares may live")
    real = path.resolve()
    if not real.is_dir():
        raise reader.fail(section, "path", f"{path} is not a directory")
    if not any(real.is_relative_to(root.resolve()) for root in homes.share_roots):
        roots = " ".join(str(root) for root in homes.share_roots)
        raise reader.fail(section, "path", f"{path} is outside [homes] share_roots ({roots})")
    return real
