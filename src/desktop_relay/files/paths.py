"""The path rules of the files panel: which paths a user may name under a home, where they are
in the files container, and which of them are read-only shares.

A path comes from the URL as segments. Each must be a plain name: no "." or "..", no "/" (a
percent-encoded %2F arrives inside a segment), no NUL, not empty (except a trailing one, as a
folder's URL ends in "/"). What a name means inside the container (a symlink to somewhere
else) is only known there: `contained` checks the answer of `realpath` against the root.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from posixpath import join

import attr

# Linux's limits on one name and on a whole path.
MAX_NAME = 255
MAX_PATH = 4096


class BadPath(ValueError):
    """A path a user may not name; str() says why, in English, for the log."""


@attr.s(frozen=True, auto_attribs=True)
class FilesPath:
    """A checked path below a home: its segments, and where it is inside the files container."""

    root: str
    segments: tuple[str, ...]

    @property
    def relative(self) -> str:
        """The path below the home, as the API shows it ("" for the home itself)."""
        return "/".join(self.segments)

    @property
    def inside(self) -> str:
        """The path inside the files container."""
        return join(self.root, *self.segments) if self.segments else self.root

    @property
    def name(self) -> str:
        """The last segment ("" for the home itself)."""
        return self.segments[-1] if self.segments else ""

    @property
    def parent(self) -> FilesPath:
        return FilesPath(self.root, self.segments[:-1])

    def child(self, name: str) -> FilesPath:
        """The path of `name` in this folder; BadPath unless it is a plain name."""
        return FilesPath(self.root, (*self.segments, check_name(name)))


def check_name(name: str) -> str:
    """A single file or folder name as given by a user; BadPath unless it is a plain one."""
    if not name:
        raise BadPath("an empty name")
    if name in (".", ".."):
        raise BadPath(f"the name {name!r} points elsewhere")
    if "/" in name:
        raise BadPath("a name with '/' in it")
    if "\0" in name:
        raise BadPath("a name with a NUL character")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME:
        raise BadPath(f"a name longer than {MAX_NAME} bytes")
    return name


def files_path(root: str, segments: Sequence[bytes]) -> FilesPath:
    """The path named by a URL's segments (percent-decoded bytes) below `root`.

    One empty segment at the end is the trailing slash of a folder's URL; an empty one elsewhere
    (a//b) is refused rather than merged, so that every path has one spelling."""
    parts = list(segments)
    if parts and parts[-1] == b"":
        parts.pop()
    names = []
    for part in parts:
        try:
            name = part.decode("utf-8")
        except UnicodeDecodeError:
            raise BadPath("a name that is not UTF-8") from None
        names.append(check_name(name))
    path = FilesPath(root, tuple(names))
    if len(path.inside.encode("utf-8")) > MAX_PATH:
        raise BadPath(f"a path longer than {MAX_PATH} bytes")
    return path


def contained(root: str, resolved: str) -> bool:
    """Whether `resolved` (what realpath said inside the container) is `root` or below it: a
    symlink that leads out of the home is refused, wherever it leads."""
    root = root.rstrip("/")
    return resolved == root or resolved.startswith(root + "/")


def in_share(inside: str, share_mounts: Iterable[str]) -> bool:
    """Whether `inside` (a resolved path in the files container) is a read-only share's mount
    point or below one: nothing may be written there. The mount is read-only anyway; this
    answers 403 before asking the container."""
    return any(contained(mount, inside) for mount in share_mounts)


def deletable(inside: str, root: str, share_mounts: Iterable[str]) -> bool:
    """Whether `inside` (resolved) may be deleted: not the home itself, not in a share, and not
    a folder holding a share's mount point (deleting it would reach into the share)."""
    if inside.rstrip("/") == root.rstrip("/") or in_share(inside, share_mounts):
        return False
    return not any(mount.startswith(inside.rstrip("/") + "/") for mount in share_mounts)
