"""The pure policy engine of a gate from its configuration."""

from __future__ import annotations

import datetime as dt

from gateway import access
from gateway.config.root import GatewayConfig
from gateway.config.settings import door_policy

_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


def build_engine(cfg: GatewayConfig) -> access.PolicyEngine:
    """The engine over the configured doors, access groups (schedules, holidays) and
    anti-passback pairs."""
    doors = {name: door_policy(d, cfg) for name, d in cfg.doors.items()}
    groups: dict[str, access.AccessGroup] = {}
    for name, g in cfg.access_groups.items():
        schedule = None
        if g.schedule:
            schedule = access.WeeklySchedule.from_windows(
                [(frozenset(_DAYS[d] for d in w.days), w.start, w.end) for w in g.schedule]
            )
        holidays: dict[dt.date, access.Holiday] = {d: access.Holiday() for d in g.holidays}
        for day, ranges in g.holiday_hours.items():
            holidays[day] = access.Holiday(
                ranges=tuple(access.TimeRange(r.start, r.end) for r in ranges)
            )
        groups[name] = access.AccessGroup(schedule=schedule, holidays=holidays)
    pairs = [
        access.AntiPassbackPair(
            entry=name,
            exit=d.anti_passback_pair,
            mode=access.AntiPassbackMode(d.anti_passback),
            forget_after_s=d.anti_passback_forget_after_s,
        )
        for name, d in cfg.doors.items()
        if d.anti_passback != "off" and d.anti_passback_pair
    ]
    return access.PolicyEngine(doors, groups, cfg.site.timezone, anti_passback=pairs)
