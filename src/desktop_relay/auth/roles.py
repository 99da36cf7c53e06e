"""Roles from groups: admin and teacher groups come from relay.ini [roles]; everyone else is a pupil."""

from __future__ import annotations

import attr

from . import ADMIN, PUPIL, TEACHER, Identity


@attr.s(frozen=True, auto_attribs=True)
class Roles:
    """Which groups make someone an admin or a teacher."""

    admin_groups: frozenset[str]
    teacher_groups: frozenset[str]

    def role_of(self, groups: frozenset[str]) -> str:
        """The highest role any of these groups grants."""
        if groups & self.admin_groups:
            return ADMIN
        if groups & self.teacher_groups:
            return TEACHER
        return PUPIL

    def assign(self, identity: Identity) -> Identity:
        """The identity with the role its groups grant at this sign-in."""
        return attr.evolve(identity, role=self.role_of(identity.groups))
