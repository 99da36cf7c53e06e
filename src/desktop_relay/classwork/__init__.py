"""Hand-outs and hand-ins: which Docker volume holds a class's hand-out and each pupil's hand-in,
and where desktops mount them.

A class has one hand-out volume (its teachers fill it, its pupils read it) and each pupil one
hand-in volume per class (the pupil writes it until the class's due time, the teachers collect
it). The volumes are named like homes, from hashes (groups and ids may hold characters a volume
name may not), and labelled with the instance, the owner (the pupil, or the class for a
hand-out), the kind and the class. They carry no home label, so the home measurement and the
home API never take them for homes. docs/teachers.md is the teacher's and admin's view.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

import attr

from ..engine.interface import LABEL_INSTANCE, LABEL_OWNER, LABEL_PREFIX, Mount
from ..homes import Home

# On a classwork volume: "handout" or "handin", and the class group it belongs to.
LABEL_CLASSWORK = LABEL_PREFIX + "classwork"
LABEL_CLASS = LABEL_PREFIX + "class"
HANDOUT, HANDIN = "handout", "handin"

# A class appears as a folder name inside desktops: one path segment, nothing odd.
_SEGMENT = re.compile(r"^[^/\x00]{1,255}$")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def folder_safe(class_group: str) -> bool:
    """Whether a class's name can be a folder inside a desktop (one path segment)."""
    return bool(_SEGMENT.match(class_group)) and class_group not in (".", "..")


@attr.s(frozen=True, auto_attribs=True)
class ClassVolume(Home):
    """A hand-out or hand-in volume; a Home so the files containers and the volume engine take it.

    `key` is the kind and class ("handout:klasse-5a"), `owner` the pupil (hand-in) or the class
    (hand-out), `path` where a files container mounts it."""

    kind: str = HANDOUT
    class_group: str = ""

    @property
    def labels(self) -> Mapping[str, str]:
        return {LABEL_INSTANCE: self.instance, LABEL_OWNER: self.owner, LABEL_CLASSWORK: self.kind,
                LABEL_CLASS: self.class_group}

    def mount_at(self, target: str, read_only: bool) -> Mount:
        """This volume mounted at `target`."""
        return Mount(source=self.volume, target=target, read_only=read_only, kind="volume")


def handout_volume(instance: str, class_group: str, uid: int, path: str) -> ClassVolume:
    """The hand-out volume of a class."""
    return ClassVolume(
        volume=f"dr-{instance}-handout-{_digest(class_group)}", owner=class_group,
        key=f"{HANDOUT}:{class_group}", instance=instance, uid=uid, path=path,
        kind=HANDOUT, class_group=class_group,
    )


def handin_volume(instance: str, class_group: str, pupil: str, uid: int, path: str) -> ClassVolume:
    """A pupil's hand-in volume for a class."""
    return ClassVolume(
        volume=f"dr-{instance}-handin-{_digest(class_group)}-{_digest(pupil)}", owner=pupil,
        key=f"{HANDIN}:{class_group}", instance=instance, uid=uid, path=path,
        kind=HANDIN, class_group=class_group,
    )
