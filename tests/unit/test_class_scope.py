"""Who is whose teacher: the class settings in relay.ini and the scope they make (auth/classes.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_config import MINIMAL, error_of, write

from desktop_relay.auth import ADMIN, PUPIL, TEACHER
from desktop_relay.auth.classes import ClassScope
from desktop_relay.config import load_config
from desktop_relay.config.classes import ClassSettings

SCOPE = ClassScope(ClassSettings(class_groups=("klasse-*", "kurs-?")))


def test_no_group_is_a_class_by_default(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.classes == ClassSettings()
    assert not ClassScope(config.classes).is_class("klasse-5a")
    assert config.desktops["demo"].teachers_may_assign is False


def test_class_settings_are_read(tmp_path: Path) -> None:
    text = MINIMAL + (
        "[roles]\nteacher_groups = lehrer\nclass_groups = klasse-*, kurs-*\nadmins_see_all_classes = yes\n"
        "teacher_control = OFF\n[classes]\nstart_for_everyone = no\nhandout_folder = Material\n"
        "handin_folder = Abgabe\n"
    )
    classes = load_config(write(tmp_path, text)).classes
    assert classes == ClassSettings(
        class_groups=("klasse-*", "kurs-*"), admins_see_all_classes=True, teacher_control="off",
        start_for_everyone=False, handout_folder="Material", handin_folder="Abgabe",
    )


def test_a_desktop_only_teachers_assign_needs_no_groups(tmp_path: Path) -> None:
    text = MINIMAL + "[desktop:quiz]\nimage = x\nteachers_may_assign = yes\n"
    quiz = load_config(write(tmp_path, text)).desktops["quiz"]
    assert quiz.teachers_may_assign and quiz.groups == frozenset() and not quiz.allows("ada", frozenset({"7a"}))


@pytest.mark.parametrize(("text", "words"), [
    ("[roles]\nteacher_control = maybe\n", "[roles] teacher_control: must be off, ask or on"),
    ("[roles]\nadmins_see_all_classes = perhaps\n", "[roles] admins_see_all_classes: 'perhaps': must be yes or no"),
    ("[roles]\nclass_groups = klasse-[5]\n", "[roles] class_groups: 'klasse-[5]' is not a group name pattern"),
    ("[classes]\nhandout_folder = ../etc\n", "[classes] handout_folder: '../etc': must be one folder name"),
    ("[classes]\nhandin_folder = a/b\n", "[classes] handin_folder: 'a/b': must be one folder name"),
    ("[classes]\nhandin_folder = Handout\n", "[classes] handin_folder: must differ from handout_folder"),
    ("[classes]\nthumbnails = yes\n", "[classes] thumbnails: unknown key"),
    ("[desktop:quiz]\nimage = x\nteachers_may_assign = sometimes\n", "[desktop:quiz] teachers_may_assign: 'sometimes': must be yes or no"),
])
def test_a_wrong_class_setting_stops_start_up(tmp_path: Path, text: str, words: str) -> None:
    assert words in error_of(tmp_path, MINIMAL + text)


def test_patterns_make_classes_case_sensitively() -> None:
    assert SCOPE.is_class("klasse-5a") and SCOPE.is_class("kurs-a")
    assert not SCOPE.is_class("kurs-ab") and not SCOPE.is_class("Klasse-5a") and not SCOPE.is_class("lehrer")
    assert SCOPE.classes_in(frozenset({"klasse-5a", "lehrer", "kurs-b"})) == {"klasse-5a", "kurs-b"}


def test_a_teacher_teaches_only_the_classes_they_are_in() -> None:
    mine = frozenset({"lehrer", "klasse-5a"})
    assert SCOPE.teaches(TEACHER, mine, "klasse-5a")
    assert not SCOPE.teaches(TEACHER, mine, "klasse-5b")
    assert not SCOPE.teaches(TEACHER, mine, "lehrer")  # a group that is not a class teaches nothing
    assert not SCOPE.teaches(PUPIL, mine, "klasse-5a")  # pupils are in classes, they do not teach them
    assert SCOPE.taught(TEACHER, mine) == {"klasse-5a"} and SCOPE.taught(PUPIL, mine) == frozenset()


def test_a_teacher_sees_pupils_of_their_classes_only() -> None:
    mine = frozenset({"lehrer", "klasse-5a"})
    assert SCOPE.may_see(TEACHER, mine, PUPIL, frozenset({"klasse-5a"}))
    assert not SCOPE.may_see(TEACHER, mine, PUPIL, frozenset({"klasse-5b"}))
    # Another teacher or an admin in the same class is a colleague, not a pupil.
    assert not SCOPE.may_see(TEACHER, mine, TEACHER, frozenset({"klasse-5a"}))
    assert not SCOPE.may_see(TEACHER, mine, ADMIN, frozenset({"klasse-5a"}))


def test_admins_see_all_classes_only_when_allowed() -> None:
    pupil = frozenset({"klasse-5b"})
    assert not SCOPE.may_see(ADMIN, frozenset({"admins"}), PUPIL, pupil)
    everything = ClassScope(ClassSettings(class_groups=("klasse-*",), admins_see_all_classes=True))
    assert everything.may_see(ADMIN, frozenset({"admins"}), PUPIL, pupil)
    assert everything.taught(ADMIN, frozenset()) is None
    assert not everything.teaches(ADMIN, frozenset(), "lehrer")  # still only classes
    assert not everything.may_see(TEACHER, frozenset({"lehrer"}), PUPIL, pupil)
