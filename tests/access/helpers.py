"""Builders shared by the access tests."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from gateway.access import (
    AccessGroup,
    AntiPassbackMode,
    AntiPassbackPair,
    CardPresented,
    CredentialsPresented,
    DoorPolicy,
    FacePresented,
    FaceResult,
    Holiday,
    LivenessPolicy,
    Method,
    PersonFacts,
    PinKind,
    PinPresented,
    PolicyEngine,
    Role,
    TimeRange,
    WeeklySchedule,
)

TZ_NAME = "Asia/Shanghai"
TZ = ZoneInfo(TZ_NAME)


def at(year: int, month: int, day: int, hour: int = 12, minute: int = 0) -> float:
    """Epoch seconds of a Shanghai wall-clock time."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=TZ).timestamp()


# Tuesday 2026-11-24, noon in Shanghai.
NOON = at(2026, 11, 24, 12)


def door(*methods: Method, **kw: object) -> DoorPolicy:
    return DoorPolicy(methods=frozenset(methods), **kw)  # type: ignore[arg-type]


NIGHT_SHIFT = WeeklySchedule.from_windows(
    [(["fri"], dt.time(22), dt.time(6)), (["mon", "tue", "wed", "thu"], dt.time(8), dt.time(17))]
)

GROUPS = {
    "residents": AccessGroup(),
    "staff": AccessGroup(
        schedule=NIGHT_SHIFT,
        holidays={dt.date(2026, 10, 1): Holiday()},
    ),
    "cleaners": AccessGroup(
        schedule=WeeklySchedule.from_windows([(range(7), dt.time(9), dt.time(11))]),
        holidays={dt.date(2026, 11, 24): Holiday((TimeRange(dt.time(13), dt.time(14)),))},
    ),
}

DOORS = {
    "face": door(Method.FACE, Method.CARD),
    "card": door(Method.CARD),
    "pin": door(Method.PIN),
    "card_pin": door(Method.CARD_PIN),
    "face_card": door(Method.FACE_CARD, Method.PIN),
    "face_pin": door(Method.FACE_PIN, Method.CARD),
    "advisory": door(Method.FACE, Method.CARD, liveness=LivenessPolicy.ADVISORY),
    "staff_only": door(Method.CARD, access_groups=frozenset({"staff"})),
    "no_visitors": door(Method.CARD, Method.PIN, roles=frozenset({Role.RESIDENT, Role.STAFF})),
    "in": door(Method.CARD),
    "out": door(Method.CARD),
    "in_soft": door(Method.CARD),
    "out_soft": door(Method.CARD),
}


def engine() -> PolicyEngine:
    return PolicyEngine(
        DOORS,
        GROUPS,
        TZ_NAME,
        anti_passback=[
            AntiPassbackPair("in", "out"),
            AntiPassbackPair(
                "in_soft",
                "out_soft",
                mode=AntiPassbackMode.SOFT,
            ),
        ],
    )


def person(pid: str = "p1", **kw: object) -> PersonFacts:
    kw.setdefault("face_consent", True)
    return PersonFacts(person_id=pid, **kw)  # type: ignore[arg-type]


def card(pid: str | None = "p1", reader: str = "") -> CredentialsPresented:
    return CredentialsPresented(card=CardPresented(pid), reader=reader)


def pin(
    pid: str | None = "p1", kind: PinKind = PinKind.NORMAL, reader: str = "", **kw: object
) -> CredentialsPresented:
    return CredentialsPresented(pin=PinPresented(pid, kind, **kw), reader=reader)  # type: ignore[arg-type]


def face(
    pid: str | None = "p1",
    ts: float = NOON,
    result: FaceResult | None = None,
    *,
    one_to_one: bool = False,
    flagged: bool = False,
    reader: str = "",
) -> CredentialsPresented:
    if result is None:
        result = FaceResult.MATCH if pid is not None or one_to_one else FaceResult.NO_MATCH
    return CredentialsPresented(
        face=FacePresented(result, ts, pid, one_to_one=one_to_one, liveness_flagged=flagged),
        reader=reader,
    )
