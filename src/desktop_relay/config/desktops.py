"""`[desktop:NAME]` sections: which image a desktop runs, with what limits, for whom, and how its
home and warm pool behave."""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

import attr

from .values import (
    NAME,
    ConfigError,
    Reader,
    byte_size,
    cpus,
    docker_size,
    duration,
    non_negative_int,
    off,
    optional,
    positive_int,
    word_set,
    yes_no,
)


@attr.s(frozen=True, auto_attribs=True)
class DesktopType:
    """One `[desktop:NAME]` section: which image to run, with what limits, for whom, with which
    home and how many started ahead."""

    name: str
    image: str
    title: str
    description: str
    shm_size: str
    memory: str | None
    cpus: float | None
    pids_limit: int | None
    environment: Mapping[str, str]
    groups: frozenset[str]
    users: frozenset[str]
    # Lifecycle policy; None means off. See etc/relay.ini and docs/idle.md.
    idle_timeout: float | None = 45 * 60
    max_lifetime: float | None = 10 * 3600
    disconnect_grace: float | None = 15 * 60
    idle_warning: float = 5 * 60
    max_sessions: int | None = None
    # The pupil's home (docs/homes.md): none, per-desktop, or per-user (one home shared by the
    # desktops of the same home_family), mounted at home_path and owned by home_uid.
    home: str = "per-user"
    home_family: str = "default"
    home_path: str = "/home/kasm-user"
    home_uid: int = 1000
    # Bytes a home may hold (None: no limit); see docs/homes.md for where it is enforced.
    home_quota: int | None = None
    # Containers kept started ahead for this desktop (docs/pool.md), replaced after pool_max_age.
    pool_size: int = 0
    pool_max_age: float = 4 * 3600
    # Whether teachers may offer this desktop to one of their classes for a time (docs/teachers.md).
    teachers_may_assign: bool = False

    @property
    def memory_bytes(self) -> int:
        """The memory limit in bytes, counted against the memory budget (0: no limit set)."""
        return byte_size(self.memory) if self.memory else 0

    def allows(self, user_id: str, groups: frozenset[str]) -> bool:
        """Whether a user with these groups may start this desktop ("*" admits everyone)."""
        return "*" in self.groups or user_id in self.users or bool(self.groups & groups)



DESKTOP_DEFAULTS = {
    "image": None,
    "title": "",
    "description": "",
    "shm_size": "512m",
    "memory": "",
    "cpus": "",
    "pids_limit": "",
    "environment": "",
    "groups": "",
    "users": "",
    "idle_timeout": "45m",
    "max_lifetime": "10h",
    "disconnect_grace": "15m",
    "idle_warning": "5m",
    "max_sessions": "off",
    "home": "per-user",
    "home_family": "default",
    "home_path": "/home/kasm-user",
    "home_uid": "1000",
    "home_quota": "off",
    "pool_size": "0",
    "pool_max_age": "4h",
    "teachers_may_assign": "no",
}
HOME_KINDS = ("none", "per-desktop", "per-user")
# Environment variables the relay sets itself; a desktop section may not override them.
_RESERVED_ENVIRONMENT = frozenset({"VNC_PW", "NO_VNC_PORT"})


def environment(text: str) -> Mapping[str, str]:
    env: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        name, sep, value = line.partition("=")
        if not sep or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name.strip()):
            raise ValueError(f"{line!r} is not NAME=value (one per line)")
        if name.strip() in _RESERVED_ENVIRONMENT:
            raise ValueError(f"{name.strip()} is set by the relay itself")
        env[name.strip()] = value.strip()
    return MappingProxyType(env)


def home_kind(text: str) -> str:
    if text not in HOME_KINDS:
        raise ValueError("must be none, per-desktop or per-user")
    return text


def family(text: str) -> str:
    if not NAME.match(text):
        raise ValueError("must be lower-case letters, digits, '.', '_' or '-'")
    return text


def container_path(text: str) -> str:
    """An absolute path inside a container, without '..' (it names where a home is mounted)."""
    if not text.startswith("/") or text == "/" or ".." in text.split("/"):
        raise ValueError("must be an absolute path inside the container, such as /home/kasm-user")
    return text.rstrip("/")


def read_desktops(reader: Reader) -> Mapping[str, DesktopType]:
    desktops: dict[str, DesktopType] = {}
    k = DESKTOP_DEFAULTS
    for section in reader.parser.sections():
        if not section.startswith("desktop:"):
            continue
        name = section.partition(":")[2]
        if not NAME.match(name):
            raise reader.fail(section, None, "desktop name must be lower-case letters and digits")
        image = reader.raw(section, "image", k)
        if not image:
            raise reader.fail(section, "image", "must not be empty")
        groups = reader.value(section, "groups", k, word_set)
        users = reader.value(section, "users", k, word_set)
        assignable = reader.value(section, "teachers_may_assign", k, yes_no)
        if not groups and not users and not assignable:
            raise reader.fail(
                section, "groups",
                "no one may start this desktop: name groups, users or *, or let teachers assign it",
            )
        desktops[name] = DesktopType(
            name=name,
            image=image,
            title=reader.raw(section, "title", k) or name,
            description=reader.raw(section, "description", k),
            shm_size=reader.value(section, "shm_size", k, docker_size),
            memory=reader.value(section, "memory", k, optional(docker_size)),
            cpus=reader.value(section, "cpus", k, optional(cpus)),
            pids_limit=reader.value(section, "pids_limit", k, optional(positive_int)),
            environment=reader.value(section, "environment", k, environment),
            groups=groups,
            users=users,
            idle_timeout=reader.value(section, "idle_timeout", k, off(duration)),
            max_lifetime=reader.value(section, "max_lifetime", k, off(duration)),
            disconnect_grace=reader.value(section, "disconnect_grace", k, off(duration)),
            idle_warning=reader.value(section, "idle_warning", k, duration),
            max_sessions=reader.value(section, "max_sessions", k, off(positive_int)),
            home=reader.value(section, "home", k, home_kind),
            home_family=reader.value(section, "home_family", k, family),
            home_path=reader.value(section, "home_path", k, container_path),
            home_uid=reader.value(section, "home_uid", k, non_negative_int),
            home_quota=reader.value(section, "home_quota", k, off(byte_size)),
            pool_size=reader.value(section, "pool_size", k, non_negative_int),
            pool_max_age=reader.value(section, "pool_max_age", k, duration),
            teachers_may_assign=assignable,
        )
        if desktops[name].pool_size and desktops[name].home != "none":
            # Docker cannot add a mount to a running container: a pooled desktop could only get
            # its pupil's home by restarting, which is no faster than a cold start.
            raise reader.fail(
                section, "pool_size",
                "needs home = none: a pooled container cannot take a home without a restart "
                "(pre-start desktops with homes through a [schedule:NAME] instead)",
            )
        idle_timeout = desktops[name].idle_timeout
        if idle_timeout is not None and desktops[name].idle_warning >= idle_timeout:
            raise reader.fail(section, "idle_warning", "must be shorter than idle_timeout")
    if not desktops:
        raise ConfigError(f"{reader.path}: no [desktop:NAME] section: there is nothing to start")
    return MappingProxyType(desktops)
