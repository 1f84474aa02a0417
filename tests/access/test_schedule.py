"""Weekly schedules across midnight, holidays, timezone handling and parsing."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.access import (
    AccessGroup,
    DoorPolicy,
    Holiday,
    Method,
    PersonFacts,
    PolicyEngine,
    Reason,
    TimeRange,
    WeeklySchedule,
    parse_holidays,
    parse_weekly,
)
from gateway.errors import ConfigError
from tests.access.helpers import GROUPS, at, card, engine, person

STAFF = person(access_group="staff")
CLEANER = person(access_group="cleaners")


def wall(
    year: int, month: int, day: int, hour: int, minute: int, *, second: int = 0
) -> dt.datetime:
    """A naive site wall-clock time (what ``AccessGroup.check`` takes)."""
    return dt.datetime.combine(dt.date(year, month, day), dt.time(hour, minute, second))


def reason_at(when: float, who: PersonFacts = STAFF) -> Reason:
    return engine().decide("card", card(), who, when).reason


# 2026-11-27 is a Friday, 2026-11-28 a Saturday, 2026-10-01 a Thursday.
@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (at(2026, 11, 27, 21, 59), Reason.OUTSIDE_SCHEDULE),  # Friday before the night range
        (at(2026, 11, 27, 22, 0), Reason.GRANTED),  # Friday night range starts
        (at(2026, 11, 27, 23, 59), Reason.GRANTED),
        (at(2026, 11, 28, 0, 0), Reason.GRANTED),  # Saturday morning: Friday's range goes on
        (at(2026, 11, 28, 5, 59), Reason.GRANTED),
        (at(2026, 11, 28, 6, 0), Reason.OUTSIDE_SCHEDULE),  # end is exclusive
        (at(2026, 11, 28, 23, 0), Reason.OUTSIDE_SCHEDULE),  # Saturday has no own range
        (at(2026, 11, 27, 3, 0), Reason.OUTSIDE_SCHEDULE),  # Thursday has no night range
        (at(2026, 11, 26, 8, 0), Reason.GRANTED),  # Thursday day shift
        (at(2026, 11, 26, 17, 0), Reason.OUTSIDE_SCHEDULE),
        (at(2026, 11, 29, 10, 0), Reason.OUTSIDE_SCHEDULE),  # Sunday
        (at(2026, 10, 1, 10, 0), Reason.HOLIDAY),  # Thursday, but a closed holiday
        (at(2026, 10, 2, 3, 0), Reason.OUTSIDE_SCHEDULE),
    ],
)
def test_staff_schedule_in_shanghai(when: float, expected: Reason) -> None:
    assert reason_at(when) is expected


def test_utc_instant_is_judged_in_site_time() -> None:
    # 14:30 UTC on Friday = 22:30 Friday in Shanghai (UTC+8, no DST): inside the night range.
    when = dt.datetime(2026, 11, 27, 14, 30, tzinfo=dt.UTC).timestamp()
    assert reason_at(when) is Reason.GRANTED
    utc_engine = PolicyEngine({"card": DoorPolicy(frozenset({Method.CARD}))}, GROUPS, "UTC")
    assert utc_engine.decide("card", card(), STAFF, when).reason is Reason.OUTSIDE_SCHEDULE


def test_special_holiday_schedule_replaces_weekly_one() -> None:
    # Cleaners: daily 09-11, but 2026-11-24 is a holiday open 13-14 only.
    assert reason_at(at(2026, 11, 24, 10, 0), CLEANER) is Reason.HOLIDAY
    assert reason_at(at(2026, 11, 24, 13, 30), CLEANER) is Reason.GRANTED
    assert reason_at(at(2026, 11, 24, 14, 0), CLEANER) is Reason.HOLIDAY
    assert reason_at(at(2026, 11, 25, 10, 0), CLEANER) is Reason.GRANTED


def test_holiday_does_not_cut_the_previous_night() -> None:
    night = WeeklySchedule.from_windows([(["fri"], dt.time(22), dt.time(6))])
    group = AccessGroup(night, {dt.date(2026, 11, 28): Holiday()})
    local = wall(2026, 11, 28, 2, 0)
    assert group.check(local) is None
    assert group.check(wall(2026, 11, 28, 7, 0)) is Reason.HOLIDAY


def test_always_group_closed_on_holiday() -> None:
    group = AccessGroup(None, {dt.date(2026, 1, 1): Holiday()})
    assert group.check(wall(2026, 1, 1, 12, 0)) is Reason.HOLIDAY
    assert group.check(wall(2026, 1, 2, 0, 0)) is None
    assert group.check(wall(2025, 12, 31, 23, 59, second=59)) is None


def test_wall_clock_across_dst_change() -> None:
    # Europe/Berlin springs forward on 2026-03-29; 08:00-17:00 stays local wall clock.
    groups = {"g": AccessGroup(WeeklySchedule.from_windows([(range(7), dt.time(8), dt.time(17))]))}
    e = PolicyEngine({"d": DoorPolicy(frozenset({Method.CARD}))}, groups, "Europe/Berlin")
    berlin = ZoneInfo("Europe/Berlin")
    who = person(access_group="g")
    for day in (28, 29, 30):
        inside = dt.datetime(2026, 3, day, 8, 0, tzinfo=berlin).timestamp()
        before = dt.datetime(2026, 3, day, 7, 59, tzinfo=berlin).timestamp()
        assert e.decide("d", card(), who, inside).granted
        assert e.decide("d", card(), who, before).reason is Reason.OUTSIDE_SCHEDULE


def test_time_range_edges() -> None:
    whole = TimeRange.parse("00:00-24:00")
    assert not whole.crosses_midnight
    assert whole.covers_start_day(0)
    assert whole.covers_start_day(86_399)
    until_midnight = TimeRange.parse("20:00-00:00")
    assert not until_midnight.crosses_midnight
    assert until_midnight.covers_start_day(86_399)
    assert not until_midnight.covers_next_day(0)
    day_long = TimeRange.parse("08:00-08:00")
    assert day_long.crosses_midnight
    assert day_long.covers_next_day(8 * 3600 - 1)
    assert not day_long.covers_next_day(8 * 3600)


@pytest.mark.parametrize("bad", ["8-17", "25:00-26:00", "08:60-09:00", "", "08:00 to 09:00"])
def test_time_range_parse_errors(bad: str) -> None:
    with pytest.raises(ValueError, match="time range"):
        TimeRange.parse(bad)


def test_parse_weekly_and_holidays() -> None:
    weekly = parse_weekly({"mon-fri": ["07:00-09:00", "17:00-19:00"], "sun": ["22:00-06:00"]})
    assert len(weekly.ranges(0)) == 2
    assert weekly.ranges(5) == ()
    assert weekly.ranges(6) == (TimeRange(dt.time(22), dt.time(6)),)
    wrapped = parse_weekly({"sat-mon": ["10:00-11:00"], "daily": ["12:00-13:00"]})
    assert [len(wrapped.ranges(d)) for d in range(7)] == [2, 1, 1, 1, 1, 2, 2]
    holidays = parse_holidays({"2026-10-01": "closed", "2026-10-02": ["09:00-12:00"]})
    assert holidays[dt.date(2026, 10, 1)].closed
    assert not holidays[dt.date(2026, 10, 2)].closed


def test_parse_errors_name_the_key() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_weekly({"funday": ["07:00-09:00"], "mon": ["7am-9am"]}, key="groups.staff")
    keys = [p[0] for p in exc.value.problems]
    assert keys == ["groups.staff.funday", "groups.staff.mon"]
    with pytest.raises(ConfigError, match="day span"):
        parse_weekly({"mon-tue-wed": ["07:00-09:00"]})
    with pytest.raises(ConfigError, match="ISO date"):
        parse_holidays({"1st of May": "closed"})
    with pytest.raises(ConfigError, match="closed"):
        parse_holidays({"2026-05-01": "open"})
    with pytest.raises(ConfigError, match="time range"):
        parse_holidays({"2026-05-01": ["nine-ten"]})


def test_schedule_validation() -> None:
    with pytest.raises(ValueError, match="7 days"):
        WeeklySchedule(((),))
    with pytest.raises(ValueError, match="weekday"):
        WeeklySchedule.from_windows([([7], dt.time(1), dt.time(2))])
    with pytest.raises(ValueError, match="naive"):
        TimeRange(dt.time(1, tzinfo=dt.UTC), dt.time(2))


minutes = st.integers(min_value=0, max_value=24 * 60 - 1)


@given(start=minutes, end=minutes, query=minutes, weekday=st.integers(0, 6))
def test_every_day_range_matches_brute_force(
    start: int, end: int, query: int, weekday: int
) -> None:
    """The same range on every day covers exactly its minute set, midnight or not."""
    rng = TimeRange(dt.time(start // 60, start % 60), dt.time(end // 60, end % 60))
    group = AccessGroup(WeeklySchedule.from_windows([(range(7), rng.start, rng.end)]))
    stop = end if end != 0 else 24 * 60
    if stop > start:
        covered = set(range(start, stop))
    else:  # crosses midnight: evening part of today plus morning part from yesterday
        covered = set(range(start, 24 * 60)) | set(range(stop))
    day = dt.date(2026, 11, 23) + dt.timedelta(days=weekday)
    local = dt.datetime.combine(day, dt.time(query // 60, query % 60))
    assert (group.check(local) is None) == (query in covered)


@given(start=minutes, end=minutes, query=minutes)
def test_single_day_range_spills_only_into_the_next_day(start: int, end: int, query: int) -> None:
    rng = TimeRange(dt.time(start // 60, start % 60), dt.time(end // 60, end % 60))
    group = AccessGroup(WeeklySchedule.from_windows([(["wed"], rng.start, rng.end)]))
    t = dt.time(query // 60, query % 60)
    wed, thu, fri = (dt.datetime.combine(dt.date(2026, 11, d), t) for d in (25, 26, 27))
    sec = query * 60
    assert (group.check(wed) is None) == rng.covers_start_day(sec)
    assert (group.check(thu) is None) == rng.covers_next_day(sec)
    assert group.check(fri) is Reason.OUTSIDE_SCHEDULE
