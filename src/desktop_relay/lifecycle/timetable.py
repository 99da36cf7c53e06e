"""Lesson times of a `[schedule:NAME]`: weekday lines from relay.ini or the school's iCalendar
export, turned into the lessons that begin in a span of time (epoch seconds, time zone applied).

Reading and parsing only; what happens before a lesson is prestart.py's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

import attr
import icalendar
import recurring_ical_events
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from ..config import ScheduleSettings

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_LINE = re.compile(r"(?P<days>[a-z,\-]+)\s+(?P<start>\d{1,2}:\d\d)\s*-\s*(?P<end>\d{1,2}:\d\d)")


class TimetableError(ValueError):
    """Lesson times that cannot be read; str() says which line or entry, and why."""


@attr.s(frozen=True, auto_attribs=True, order=True)
class Lesson:
    """One lesson: when it begins and ends, epoch seconds."""

    start: float
    end: float


class Timetable(Protocol):
    """Where a schedule's lessons come from."""

    def lessons(self, start: float, end: float) -> list[Lesson]:
        """The lessons that begin at or after `start` and before `end`, in order."""

    def refresh(self) -> Deferred[None]:
        """Bring the lessons up to date with their source (a file that may have changed)."""


@attr.s(frozen=True, auto_attribs=True)
class _WeeklyLesson:
    weekdays: frozenset[int]
    start: time
    end: time


class WeeklyTimes:
    """Lessons from lines such as "mon,wed 08:00-08:45" or "mon-fri 07:55-08:40", in a time zone
    (so a lesson stays at 08:00 across the change to summer time)."""

    def __init__(self, lines: Iterable[str], zone: ZoneInfo) -> None:
        self._zone = zone
        self._weekly = [_weekly(line) for line in lines]

    def lessons(self, start: float, end: float) -> list[Lesson]:
        found = []
        day = datetime.fromtimestamp(start, self._zone).date() - timedelta(days=1)
        last = datetime.fromtimestamp(end, self._zone).date()
        while day <= last:
            for weekly in self._weekly:
                if day.weekday() in weekly.weekdays:
                    lesson = Lesson(self._at(day, weekly.start), self._at(day, weekly.end))
                    if start <= lesson.start < end:
                        found.append(lesson)
            day += timedelta(days=1)
        return sorted(set(found))

    def refresh(self) -> Deferred[None]:
        """Lines of relay.ini change only with a restart."""
        return succeed(None)

    def _at(self, day: date, at: time) -> float:
        return datetime.combine(day, at, self._zone).timestamp()


def _weekly(line: str) -> _WeeklyLesson:
    match = _LINE.fullmatch(line.strip().lower())
    if match is None:
        raise TimetableError(f"{line!r}: expected weekdays and a time span, such as 'mon,thu 08:00-08:45'")
    days: set[int] = set()
    for part in match["days"].split(","):
        first, _, last = part.partition("-")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS):
            raise TimetableError(f"{line!r}: {part!r} is not a weekday ({', '.join(WEEKDAYS)}) or a span of them")
        a, b = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
        if b < a:
            raise TimetableError(f"{line!r}: {part!r} runs backwards")
        days.update(range(a, b + 1))
    try:
        begins, ends = time.fromisoformat(match["start"].zfill(5)), time.fromisoformat(match["end"].zfill(5))
    except ValueError:
        raise TimetableError(f"{line!r}: not a time of day") from None
    if ends <= begins:
        raise TimetableError(f"{line!r}: the lesson must end after it begins")
    return _WeeklyLesson(frozenset(days), begins, ends)


class CalendarTimes:
    """Lessons from an iCalendar file: its events, repeated by their rules (RRULE, EXDATE,
    moved occurrences) by recurring-ical-events; times without a zone are in `zone`. Whole-day
    events are not lessons and are left out."""

    def __init__(self, data: bytes, zone: ZoneInfo, source: str = "calendar") -> None:
        self._zone = zone
        try:
            self._calendar = icalendar.Calendar.from_ical(data)
        except ValueError as e:
            raise TimetableError(f"{source}: not an iCalendar file: {e}") from None

    def lessons(self, start: float, end: float) -> list[Lesson]:
        span = (datetime.fromtimestamp(start, self._zone), datetime.fromtimestamp(end, self._zone))
        found = []
        for event in recurring_ical_events.of(self._calendar).between(*span):
            begins, ends = event.get("DTSTART"), event.get("DTEND")
            if begins is None or not isinstance(begins.dt, datetime):
                continue
            first = self._epoch(begins.dt)
            last = self._epoch(ends.dt) if ends is not None and isinstance(ends.dt, datetime) else first
            if start <= first < end:
                found.append(Lesson(first, last))
        return sorted(set(found))

    def _epoch(self, at: datetime) -> float:
        return (at if at.tzinfo is not None else at.replace(tzinfo=self._zone)).timestamp()


class CalendarFile:
    """A schedule's iCalendar file, read again when it changes (schools export theirs anew), in
    a thread: `read(path, mtime)` returns (mtime, contents), contents None when unchanged. A file
    that cannot be read or parsed keeps the lessons read before, and says so once."""

    _log = Logger()

    def __init__(
        self, path: Path, zone: ZoneInfo, read: Callable[[Path, float | None], Deferred[tuple[float, bytes | None]]],
        *, initial: bytes | None = None,
    ) -> None:
        self._path = path
        self._zone = zone
        self._read = read
        self._mtime: float | None = None
        self._times: CalendarTimes | None = None
        self._complained = False
        if initial is not None:
            self._times = CalendarTimes(initial, zone, str(path))
            self._mtime = path.stat().st_mtime

    def lessons(self, start: float, end: float) -> list[Lesson]:
        return self._times.lessons(start, end) if self._times is not None else []

    def refresh(self) -> Deferred[None]:
        """Read the file again if it changed since the last read."""
        d = self._read(self._path, self._mtime)

        def read(result: tuple[float, bytes | None]) -> None:
            mtime, data = result
            if data is None:
                return
            self._times = CalendarTimes(data, self._zone, str(self._path))
            self._mtime = mtime
            self._complained = False
            self._log.info("calendar {path} read again", path=str(self._path))

        def unreadable(failure):  # type: ignore[no-untyped-def]
            failure.trap(OSError, TimetableError)
            if not self._complained:
                self._complained = True
                self._log.warn("calendar {path} not read, keeping its lessons as they were: {problem}",
                               path=str(self._path), problem=str(failure.value))

        return d.addCallback(read).addErrback(unreadable)


def read_if_changed(path: Path, mtime: float | None) -> tuple[float, bytes | None]:
    """(mtime, contents) of a file, contents None when its mtime is still `mtime` (blocking: run
    it in a thread)."""
    now = path.stat().st_mtime
    return (now, None) if now == mtime else (now, path.read_bytes())


def timetable_for(
    schedule: ScheduleSettings, read: Callable[[Path, float | None], Deferred[tuple[float, bytes | None]]]
) -> WeeklyTimes | CalendarFile:
    """The timetable of a schedule; TimetableError for lines or a calendar that cannot be read
    (read at start-up, before the reactor runs, as relay.ini is)."""
    zone = ZoneInfo(schedule.timezone)
    if schedule.calendar is None:
        return WeeklyTimes(schedule.times, zone)
    return CalendarFile(schedule.calendar, zone, read, initial=schedule.calendar.read_bytes())
