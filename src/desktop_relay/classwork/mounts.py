"""Which hand-outs and hand-ins a user's desktop mounts, and how.

A pupil's desktop gets, for each of their classes, the class's hand-out read-only at
`HOME/<handout_folder>/<class>` and their own hand-in at `HOME/<handin_folder>/<class>`,
read-write until the class's due time and read-only from then on. A teacher's (or admin's)
desktop gets the hand-outs of the classes they teach read-write, to fill them from inside.
"""

from __future__ import annotations

from collections.abc import Container

import attr

from ..auth import PUPIL
from ..auth.classes import ClassScope
from ..config import DesktopType
from . import ClassVolume, folder_safe, handin_volume, handout_volume


@attr.s(frozen=True, auto_attribs=True)
class ClassworkMount:
    """One classwork volume as a desktop mounts it."""

    volume: ClassVolume
    target: str
    read_only: bool


def classwork_mounts(
    scope: ClassScope, instance: str, desktop: DesktopType, user_id: str, role: str,
    groups: frozenset[str], closed: Container[str],
) -> tuple[ClassworkMount, ...]:
    """The classwork volumes of one user's container of this desktop, by class name; `closed`
    holds the classes whose hand-in is past its due time."""
    settings = scope.settings
    home, uid = desktop.home_path.rstrip("/"), desktop.home_uid
    mounts = []
    if role == PUPIL:
        for class_group in sorted(scope.classes_in(groups)):
            if not folder_safe(class_group):
                continue
            mounts.append(ClassworkMount(handout_volume(instance, class_group, uid, "/handout"),
                                         f"{home}/{settings.handout_folder}/{class_group}", True))
            mounts.append(ClassworkMount(handin_volume(instance, class_group, user_id, uid, "/handin"),
                                         f"{home}/{settings.handin_folder}/{class_group}",
                                         class_group in closed))
        return tuple(mounts)
    taught = scope.taught(role, groups)
    # A see-all admin teaches every class, but their desktop mounts only those they are in.
    for class_group in sorted(scope.classes_in(groups) if taught is None else taught):
        if folder_safe(class_group):
            mounts.append(ClassworkMount(handout_volume(instance, class_group, uid, "/handout"),
                                         f"{home}/{settings.handout_folder}/{class_group}", False))
    return tuple(mounts)
