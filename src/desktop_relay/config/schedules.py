"""`[schedule:NAME]` sections: which group's desktops are started before which lessons."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attr

from .desktops import DesktopType
from .values import NAME, Reader, duration


@attr.s(frozen=True, auto_attribs=True)
class ScheduleSettings:
    """One `[schedule:NAME]` section. The lesson times are kept as written (`times` lines or the
    `calendar` file) and read by lifecycle/timetable.py."""

    name: str
    group: str
    desktop: str
    # Lines such as "mon,wed 08:00-08:45"; empty when a calendar is given.
    times: tuple[str, ...]
    # An iCalendar file exported from the school's timetable; None when times are given.
    calendar: Path | None
    # How long before a lesson its desktops are started.
    lead: float
    # How long after a lesson's start an unopened pre-started desktop is kept.
    claim_window: float
    timezone: str


SCHEDULE_DEFAULTS: Mapping[str, str | None] = {
    "group": None,
    "desktop": None,
    "times": "",
    "calendar": "",
    "lead": "10m",
    "claim_window": "15m",
    "timezone": "Europe/Berlin",
}


def read_schedules(reader: Reader, desktops: Mapping[str, DesktopType]) -> Mapping[str, ScheduleSettings]:
    schedules: dict[str, ScheduleSettings] = {}
    k = SCHEDULE_DEFAULTS
    for section in reader.parser.sections():
        if not section.startswith("schedule:"):
            continue
        name = section.partition(":")[2]
        if not NAME.match(name):
            raise reader.fail(section, None, "schedule name must be lower-case letters, digits, '.', '_' or '-'")
        group = reader.raw(section, "group", k)
        if not group:
            raise reader.fail(section, "group", "must name the group whose desktops are started")
        desktop = reader.raw(section, "desktop", k)
        if desktop not in desktops:
            raise reader.fail(section, "desktop", f"there is no [desktop:{desktop}]")
        times = tuple(line.strip() for line in reader.raw(section, "times", k).splitlines() if line.strip())
        calendar = reader.path_value(section, "calendar", k) if reader.raw(section, "calendar", k) else None
        if bool(times) == (calendar is not None):
            raise reader.fail(
                section, "times", "set exactly one of times (lines such as 'mon 08:00-08:45') and calendar"
            )
        if calendar is not None and not calendar.is_file():
            raise reader.fail(section, "calendar", f"cannot read {calendar}: no such file")
        zone = reader.raw(section, "timezone", k)
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise reader.fail(section, "timezone", f"{zone!r} is not a time zone such as Europe/Berlin") from None
        schedules[name] = ScheduleSettings(
            name=name, group=group, desktop=desktop, times=times, calendar=calendar,
            lead=reader.value(section, "lead", k, duration),
            claim_window=reader.value(section, "claim_window", k, duration),
            timezone=zone,
        )
    return MappingProxyType(schedules)
