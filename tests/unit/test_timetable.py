"""Lesson times: weekday lines and iCalendar files, in the schedule's time zone."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from twisted.internet.defer import succeed

from desktop_relay.config import ScheduleSettings
from desktop_relay.lifecycle.timetable import (
    CalendarFile,
    CalendarTimes,
    Lesson,
    TimetableError,
    WeeklyTimes,
    read_if_changed,
    timetable_for,
)

BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp()


def test_weekday_lines_give_the_lessons_of_the_span_in_order() -> None:
    times = WeeklyTimes(["mon,wed 08:00-08:45", "tue-thu 9:50-10:35"], BERLIN)
    # Monday 2026-03-02 to Thursday 2026-03-05, 12:00.
    lessons = times.lessons(at("2026-03-02T00:00"), at("2026-03-05T12:00"))
    assert lessons == [
        Lesson(at("2026-03-02T08:00"), at("2026-03-02T08:45")),
        Lesson(at("2026-03-03T09:50"), at("2026-03-03T10:35")),
        Lesson(at("2026-03-04T08:00"), at("2026-03-04T08:45")),
        Lesson(at("2026-03-04T09:50"), at("2026-03-04T10:35")),
        Lesson(at("2026-03-05T09:50"), at("2026-03-05T10:35")),
    ]
    # A lesson that began before the span is not in it.
    assert times.lessons(at("2026-03-02T08:01"), at("2026-03-02T23:00")) == []


def test_a_lesson_stays_at_its_time_of_day_across_the_change_to_summer_time() -> None:
    times = WeeklyTimes(["mon 08:00-08:45"], BERLIN)
    # Summer time begins on Sunday 2026-03-29.
    before, after = times.lessons(at("2026-03-23T00:00"), at("2026-03-31T00:00"))
    assert after.start - before.start == 7 * 86400 - 3600
    assert datetime.fromtimestamp(after.start, BERLIN).hour == 8


@pytest.mark.parametrize(("line", "why"), [
    ("monday 08:00-08:45", "is not a weekday"),
    ("mon 8-9", "expected weekdays and a time span"),
    ("fri-mon 08:00-08:45", "runs backwards"),
    ("mon 09:00-08:00", "must end after it begins"),
    ("mon 25:00-26:00", "not a time of day"),
])
def test_a_weekday_line_that_cannot_be_read_says_which_and_why(line: str, why: str) -> None:
    with pytest.raises(TimetableError, match=why) as raised:
        WeeklyTimes([line], BERLIN)
    assert repr(line) in str(raised.value)


CALENDAR = b"""BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//School//Timetable//DE
BEGIN:VEVENT
UID:informatik-7a@school.example
DTSTART;TZID=Europe/Berlin:20260302T080000
DTEND;TZID=Europe/Berlin:20260302T084500
RRULE:FREQ=WEEKLY;BYDAY=MO,TH
EXDATE;TZID=Europe/Berlin:20260305T080000
SUMMARY:Informatik 7a
END:VEVENT
BEGIN:VEVENT
UID:informatik-7a@school.example
RECURRENCE-ID;TZID=Europe/Berlin:20260309T080000
DTSTART;TZID=Europe/Berlin:20260309T100000
DTEND;TZID=Europe/Berlin:20260309T104500
SUMMARY:Informatik 7a (moved)
END:VEVENT
BEGIN:VEVENT
UID:floating@school.example
DTSTART:20260310T123000
DTEND:20260310T131500
SUMMARY:Projekt
END:VEVENT
BEGIN:VEVENT
UID:holiday@school.example
DTSTART;VALUE=DATE:20260311
SUMMARY:Wandertag
END:VEVENT
END:VCALENDAR
"""


def test_a_calendar_repeats_its_lessons_with_exceptions_and_moved_ones() -> None:
    times = CalendarTimes(CALENDAR, BERLIN)
    lessons = times.lessons(at("2026-03-02T00:00"), at("2026-03-13T00:00"))
    assert [datetime.fromtimestamp(lesson.start, BERLIN).strftime("%a %d %H:%M") for lesson in lessons] == [
        "Mon 02 08:00",  # Thursday 05 is excluded (EXDATE)
        "Mon 09 10:00",  # moved (RECURRENCE-ID)
        "Tue 10 12:30",  # no time zone: the schedule's
        "Thu 12 08:00",
    ]  # the whole-day event is no lesson
    assert lessons[0].end - lessons[0].start == 45 * 60


def test_a_file_that_is_no_calendar_is_refused() -> None:
    with pytest.raises(TimetableError, match="lessons.ics: not an iCalendar file"):
        CalendarTimes(b"this is a spreadsheet", BERLIN, "lessons.ics")


def test_a_calendar_file_is_read_again_when_it_changes_and_kept_when_it_breaks(tmp_path: Path) -> None:
    path = tmp_path / "lessons.ics"
    path.write_bytes(CALENDAR)
    schedule = ScheduleSettings(name="7a", group="7a", desktop="demo", times=(), calendar=path, lead=600,
                                claim_window=900, timezone="Europe/Berlin")
    timetable = timetable_for(schedule, lambda p, mtime: succeed(read_if_changed(p, mtime)))
    assert isinstance(timetable, CalendarFile)
    span = (at("2026-03-02T00:00"), at("2026-03-03T00:00"))
    assert len(timetable.lessons(*span)) == 1
    path.write_bytes(CALENDAR.replace(b"20260302T080000", b"20260302T070000").replace(b"RRULE:", b"X-NO:"))
    os.utime(path, (1, 1))  # a new mtime even where the file system counts whole seconds
    timetable.refresh()
    (lesson,) = timetable.lessons(*span)
    assert datetime.fromtimestamp(lesson.start, BERLIN).hour == 7
    path.write_bytes(b"broken")
    os.utime(path, (2, 2))
    timetable.refresh()
    assert timetable.lessons(*span) == [lesson]


def test_a_schedule_whose_lines_cannot_be_read_stops_the_start_with_the_one_line_error() -> None:
    from types import SimpleNamespace

    from desktop_relay.config import ConfigError
    from desktop_relay.service import _timetables

    schedule = ScheduleSettings(name="7a", group="7a", desktop="demo", times=("montag 08:00-08:45",),
                                calendar=None, lead=600, claim_window=900, timezone="Europe/Berlin")
    config = SimpleNamespace(source="/etc/desktop-relay/relay.ini", schedules={"7a": schedule})
    with pytest.raises(ConfigError, match=r"^/etc/desktop-relay/relay.ini: \[schedule:7a\] times: 'montag"):
        _timetables(config)
