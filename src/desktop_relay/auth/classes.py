"""Who is whose teacher: which of a person's groups are classes, and whether a signed-in teacher
(or admin) may see a pupil. The one scope check behind the class view, looking over a shoulder,
assignments, hand-outs and hand-ins.

A teacher teaches the class groups they are a member of at their current sign-in; a pupil
belongs to the class groups they were a member of at their last sign-in (users_seen). Admins see
the same as a teacher of every class only with `admins_see_all_classes`.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

import attr

from ..config.classes import ClassSettings
from . import ADMIN, PUPIL, TEACHER


@attr.s(frozen=True, auto_attribs=True)
class ClassScope:
    """The classes of groups, and which classes a role and its groups let someone teach."""

    settings: ClassSettings

    def is_class(self, group: str) -> bool:
        """Whether this group is a class or course."""
        return any(fnmatchcase(group, pattern) for pattern in self.settings.class_groups)

    def classes_in(self, groups: frozenset[str]) -> frozenset[str]:
        """The class groups among these."""
        return frozenset(group for group in groups if self.is_class(group))

    def sees_all(self, role: str) -> bool:
        """Whether this role sees every class (an admin, where the admin allowed it)."""
        return role == ADMIN and self.settings.admins_see_all_classes

    def teaches(self, role: str, groups: frozenset[str], class_group: str) -> bool:
        """Whether someone with this role and these groups teaches this class."""
        if not self.is_class(class_group):
            return False
        if self.sees_all(role):
            return True
        return role in (TEACHER, ADMIN) and class_group in groups

    def taught(self, role: str, groups: frozenset[str]) -> frozenset[str] | None:
        """The classes someone teaches; None for all of them (see `sees_all`)."""
        if self.sees_all(role):
            return None
        if role not in (TEACHER, ADMIN):
            return frozenset()
        return self.classes_in(groups)

    def may_see(self, role: str, groups: frozenset[str], pupil_role: str, pupil_groups: frozenset[str]) -> bool:
        """Whether someone may see (look at, stop, collect from) a pupil: only pupils, and only of
        a class they teach. A teacher is never in another teacher's scope, nor an admin."""
        if pupil_role != PUPIL:
            return False
        return any(self.teaches(role, groups, group) for group in self.classes_in(pupil_groups))
