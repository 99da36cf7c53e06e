"""The classwork folders a pupil sees in the files panel beside their homes, and when a folder
may not be changed: a hand-out never by a pupil, a hand-in not once its class's due time passed."""

from __future__ import annotations

from ..auth import PUPIL, Identity
from ..files.places import FilesPlace
from . import HANDIN, HANDOUT, ClassVolume, folder_safe
from .service import Classwork

# Why a classwork folder is not writable now.
READ_ONLY, HANDIN_CLOSED = "read-only", "handin-closed"


def pupil_places(classwork: Classwork, identity: Identity) -> dict[str, FilesPlace]:
    """A pupil's hand-out and hand-in of each of their classes, by key ("handout:CLASS", ...)."""
    if identity.role != PUPIL:
        return {}
    places = {}
    settings = classwork.scope.settings
    for class_group in sorted(classwork.scope.classes_in(identity.groups)):
        if not folder_safe(class_group):
            continue
        for volume, folder in ((classwork.handout(class_group), settings.handout_folder),
                               (classwork.handin(class_group, identity.user_id), settings.handin_folder)):
            places[volume.key] = classwork.files_place(volume, f"{folder} {class_group}")
    return places


def refusal(classwork: Classwork, volume: ClassVolume, for_teacher: bool) -> str | None:
    """Why this classwork folder may not be changed now (READ_ONLY, HANDIN_CLOSED), if so."""
    if volume.kind == HANDOUT:
        return None if for_teacher else READ_ONLY
    if volume.kind == HANDIN and not for_teacher:
        return HANDIN_CLOSED if classwork.closed(volume.class_group) else None
    # Teachers collect hand-ins; they never change them.
    return READ_ONLY
