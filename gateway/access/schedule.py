"""Weekly access schedules, holidays and access groups (wall-clock, timezone-aware).

A time range belongs to the weekday it starts on; when its end is not after its start it
runs past midnight into the next day (``22:00-06:00``). An end of ``00:00`` (or ``24:00``
when parsed) means midnight at the end of the start day; ``start == end`` means 24 hours.
A holiday replaces the weekly ranges of its date (closed, or a special set of ranges); the
after-midnight part of the previous day's range still applies on a holiday morning, because
it belongs to the (working) day it started on.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from gateway.errors import ConfigError

from .decision import Reason

DAY_SECONDS = 86_400
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def _seconds(t: dt.time) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second


@dataclass(frozen=True, slots=True)
class TimeRange:
    """A daily wall-clock window ``[start, end)``; crosses midnight when ``end <= start``."""

    start: dt.time
    end: dt.time

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("time ranges are wall-clock times: give naive times")

    @classmethod
    def parse(cls, text: str) -> TimeRange:
        """Parse ``"HH:MM-HH:MM"`` (end may be ``24:00``); ValueError says what is wrong."""
        m = _RANGE.match(text)
        if not m:
            raise ValueError(f"time range {text!r} is not HH:MM-HH:MM")
        sh, sm, eh, em = (int(g) for g in m.groups())
        if eh == 24 and em == 0:
            eh = 0
        if not (0 <= sh < 24 and 0 <= eh < 24 and sm < 60 and em < 60):
            raise ValueError(f"time range {text!r} has an hour or minute out of range")
        return cls(dt.time(sh, sm), dt.time(eh, em))

    @property
    def _start_s(self) -> int:
        return _seconds(self.start)

    @property
    def _end_s(self) -> int:
        end = _seconds(self.end)
        return DAY_SECONDS if end == 0 else end

    @property
    def crosses_midnight(self) -> bool:
        """True when the range runs into the next day."""
        return self._end_s <= self._start_s

    def covers_start_day(self, second_of_day: int) -> bool:
        """True when the part on the start day covers this second of that day."""
        end = DAY_SECONDS if self.crosses_midnight else self._end_s
        return self._start_s <= second_of_day < end

    def covers_next_day(self, second_of_day: int) -> bool:
        """True when the after-midnight part covers this second of the next day."""
        return self.crosses_midnight and second_of_day < self._end_s


ALL_DAY = TimeRange(dt.time(0), dt.time(0))


@dataclass(frozen=True, slots=True)
class WeeklySchedule:
    """Ranges per weekday, Monday first (``days[0]``) to Sunday (``days[6]``)."""

    days: tuple[tuple[TimeRange, ...], ...]

    def __post_init__(self) -> None:
        if len(self.days) != 7:
            raise ValueError("a weekly schedule has exactly 7 days (Monday first)")

    @classmethod
    def from_windows(
        cls, windows: Iterable[tuple[Iterable[str | int], dt.time, dt.time]]
    ) -> WeeklySchedule:
        """Build from ``(days, start, end)`` rows; days are ``"mon"``.. or 0 (Monday)..6."""
        days: list[list[TimeRange]] = [[] for _ in WEEKDAYS]
        for day_names, start, end in windows:
            rng = TimeRange(start, end)
            for day in day_names:
                days[_weekday(day)].append(rng)
        return cls(tuple(tuple(d) for d in days))

    def ranges(self, weekday: int) -> tuple[TimeRange, ...]:
        """Ranges of a weekday (0 = Monday)."""
        return self.days[weekday]


def _weekday(day: str | int) -> int:
    if isinstance(day, int):
        if 0 <= day < 7:
            return day
        raise ValueError(f"weekday {day} is not 0 (Monday) .. 6 (Sunday)")
    key = day.strip().lower()[:3]
    if key not in WEEKDAYS:
        raise ValueError(f"weekday {day!r} is not one of {', '.join(WEEKDAYS)}")
    return WEEKDAYS.index(key)


@dataclass(frozen=True, slots=True)
class Holiday:
    """A date whose weekly ranges are replaced: ``ranges=()`` means closed all day."""

    ranges: tuple[TimeRange, ...] = ()

    @property
    def closed(self) -> bool:
        """True when nobody of the group may pass on this date."""
        return not self.ranges


@dataclass(frozen=True)
class AccessGroup:
    """Who may pass when: a weekly schedule (``None`` = always) and holidays."""

    schedule: WeeklySchedule | None = None
    holidays: Mapping[dt.date, Holiday] = field(default_factory=dict)

    def _day(self, day: dt.date) -> tuple[tuple[TimeRange, ...], bool]:
        holiday = self.holidays.get(day)
        if holiday is not None:
            return holiday.ranges, True
        if self.schedule is None:
            return (ALL_DAY,), False
        return self.schedule.ranges(day.weekday()), False

    def check(self, local: dt.datetime) -> Reason | None:
        """``None`` when ``local`` (wall clock of the site) is inside the schedule.

        Otherwise ``Reason.HOLIDAY`` (today is a holiday) or ``Reason.OUTSIDE_SCHEDULE``.
        """
        second = _seconds(local.time())
        today, is_holiday = self._day(local.date())
        if any(r.covers_start_day(second) for r in today):
            return None
        yesterday, _ = self._day(local.date() - dt.timedelta(days=1))
        if any(r.covers_next_day(second) for r in yesterday):
            return None
        return Reason.HOLIDAY if is_holiday else Reason.OUTSIDE_SCHEDULE


def parse_weekly(table: Mapping[str, Sequence[str]], *, key: str = "schedule") -> WeeklySchedule:
    """Parse ``{"mon-fri": ["07:00-22:00"], "sat": ["22:00-06:00"]}``; ConfigError names the key."""
    windows: list[tuple[Iterable[str | int], dt.time, dt.time]] = []
    problems: list[tuple[str, str, str]] = []
    for days_text, ranges in table.items():
        try:
            days = _day_span(days_text)
        except ValueError as exc:
            problems.append((f"{key}.{days_text}", days_text, str(exc)))
            continue
        for text in ranges:
            try:
                rng = TimeRange.parse(text)
            except ValueError as exc:
                problems.append((f"{key}.{days_text}", text, str(exc)))
                continue
            windows.append((days, rng.start, rng.end))
    if problems:
        raise ConfigError(problems)
    return WeeklySchedule.from_windows(windows)


def _day_span(text: str) -> list[int]:
    if text.strip().lower() == "daily":
        return list(range(7))
    parts = text.split("-")
    if len(parts) == 1:
        return [_weekday(parts[0])]
    if len(parts) == 2:
        first, last = _weekday(parts[0]), _weekday(parts[1])
        return [(first + i) % 7 for i in range((last - first) % 7 + 1)]
    raise ValueError(f"day span {text!r} is not 'mon', 'mon-fri' or 'daily'")


def parse_holidays(
    table: Mapping[str, str | Sequence[str]], *, key: str = "holidays"
) -> dict[dt.date, Holiday]:
    """Parse ``{"2026-10-01": "closed", "2026-10-02": ["09:00-12:00"]}``."""
    out: dict[dt.date, Holiday] = {}
    problems: list[tuple[str, str, str]] = []
    for date_text, value in table.items():
        try:
            day = dt.date.fromisoformat(date_text)
        except ValueError:
            problems.append((f"{key}", date_text, "not an ISO date YYYY-MM-DD"))
            continue
        if isinstance(value, str):
            if value.strip().lower() != "closed":
                problems.append((f"{key}.{date_text}", value, "give 'closed' or a list of ranges"))
                continue
            out[day] = Holiday()
            continue
        try:
            out[day] = Holiday(tuple(TimeRange.parse(v) for v in value))
        except ValueError as exc:
            problems.append((f"{key}.{date_text}", str(list(value)), str(exc)))
    if problems:
        raise ConfigError(problems)
    return out
