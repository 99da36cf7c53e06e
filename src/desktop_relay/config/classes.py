"""The class settings: which groups are classes (`[roles] class_groups`), what teachers may do
with them (`[roles] teacher_control`, `admins_see_all_classes`), and `[classes]`: starting a
class's desktops at once and where hand-out and hand-in folders appear in a desktop."""

from __future__ import annotations

import re
from collections.abc import Mapping

import attr

from .values import Reader, word_set, yes_no

# teacher_control: whether a watching teacher may take over a pupil's keyboard and pointer.
CONTROL_OFF, CONTROL_ASK, CONTROL_ON = "off", "ask", "on"
CONTROL_MODES = (CONTROL_OFF, CONTROL_ASK, CONTROL_ON)

ROLES_DEFAULTS: Mapping[str, str | None] = {
    "admin_groups": "",
    "teacher_groups": "",
    "class_groups": "",
    "admins_see_all_classes": "no",
    "teacher_control": CONTROL_ASK,
}

CLASSES_DEFAULTS: Mapping[str, str | None] = {
    "start_for_everyone": "yes",
    "handout_folder": "Handout",
    "handin_folder": "Hand-in",
}

# A folder name inside a desktop's home: one path segment, nothing a shell or Docker minds.
_FOLDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,63}$")
# A class group pattern: a group name with shell-style * and ? (fnmatch, case-sensitive).
_PATTERN = re.compile(r"^[^\s,\[\]]+$")


@attr.s(frozen=True, auto_attribs=True)
class ClassSettings:
    """Classes and what teachers may do in them (docs/teachers.md)."""

    # Group name patterns (fnmatch, case-sensitive) that make a group a class or course.
    class_groups: tuple[str, ...] = ()
    # Admins see every class a teacher could, not only their own.
    admins_see_all_classes: bool = False
    # off: looking only; ask: the pupil accepts on their session page; on: the teacher just takes it.
    teacher_control: str = CONTROL_ASK
    # Whether a teacher may queue a start of one desktop for every pupil of a class.
    start_for_everyone: bool = True
    # The folder names, inside a desktop's home, under which each class's hand-out
    # (read-only for pupils) and the pupil's own hand-in appear: ~/Handout/CLASS, ~/Hand-in/CLASS.
    handout_folder: str = "Handout"
    handin_folder: str = "Hand-in"


def folder_name(text: str) -> str:
    if not _FOLDER.match(text):
        raise ValueError("must be one folder name: letters, digits, '.', '_', '-' or spaces")
    return text


def read_classes(reader: Reader) -> ClassSettings:
    r, c = ROLES_DEFAULTS, CLASSES_DEFAULTS
    patterns = tuple(sorted(reader.value("roles", "class_groups", r, word_set)))
    for pattern in patterns:
        if not _PATTERN.match(pattern):
            raise reader.fail("roles", "class_groups", f"{pattern!r} is not a group name pattern")
    control = reader.raw("roles", "teacher_control", r).lower()
    if control not in CONTROL_MODES:
        raise reader.fail("roles", "teacher_control", "must be off, ask or on")
    settings = ClassSettings(
        class_groups=patterns,
        admins_see_all_classes=reader.value("roles", "admins_see_all_classes", r, yes_no),
        teacher_control=control,
        start_for_everyone=reader.value("classes", "start_for_everyone", c, yes_no),
        handout_folder=reader.value("classes", "handout_folder", c, folder_name),
        handin_folder=reader.value("classes", "handin_folder", c, folder_name),
    )
    if settings.handout_folder == settings.handin_folder:
        raise reader.fail("classes", "handin_folder", "must differ from handout_folder")
    return settings
