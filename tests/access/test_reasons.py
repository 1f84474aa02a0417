"""Every reason code is reachable through the public API, and the wiring end to end."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.access import (
    ApproachTracker,
    CredentialsPresented,
    Decision,
    FaceMatch,
    FaceResult,
    FusionSettings,
    PinKind,
    Reason,
    Recognised,
    Role,
    as_presented,
    is_fresh,
)
from tests.access.helpers import NOON, at, card, engine, face, person, pin


def _unknown_face() -> Decision:
    return engine().decide("face", face(None), None, NOON)


def _combination(door: str, first: CredentialsPresented, second: CredentialsPresented) -> Decision:
    e = engine()
    e.decide(door, first, person(), NOON)
    return e.decide(door, second, person(), NOON)


def _timeout() -> Decision:
    e = engine()
    e.decide("card_pin", card(), person(), NOON)
    [d] = e.poll(NOON + 30)
    return d


def _anti_passback() -> Decision:
    e = engine()
    e.commit(e.decide("in", card(), person(), NOON), NOON)
    return e.decide("in", card(), person(), NOON + 1)


def _credential_mismatch() -> Decision:
    e = engine()
    e.decide("card_pin", card("p1"), person("p1"), NOON)
    return e.decide("card_pin", pin("p2"), person("p2"), NOON)


SCENARIOS: dict[Reason, Callable[[], Decision]] = {
    Reason.GRANTED: lambda: engine().decide("card", card(), person(), NOON),
    Reason.UNKNOWN_FACE: _unknown_face,
    Reason.UNKNOWN_CARD: lambda: engine().decide("card", card(None), None, NOON),
    Reason.INVALID_PIN: lambda: engine().decide("pin", pin(None), None, NOON),
    Reason.LOW_QUALITY: lambda: engine().decide(
        "face", face(None, result=FaceResult.LOW_QUALITY), None, NOON
    ),
    Reason.SPOOF_SUSPECTED: lambda: engine().decide(
        "face", face(result=FaceResult.SPOOF), None, NOON
    ),
    Reason.OUTSIDE_SCHEDULE: lambda: engine().decide(
        "card", card(), person(access_group="staff"), at(2026, 11, 28, 12)
    ),
    Reason.HOLIDAY: lambda: engine().decide(
        "card", card(), person(access_group="staff"), at(2026, 10, 1, 10)
    ),
    Reason.NOT_YET_VALID: lambda: engine().decide(
        "card", card(), person(valid_from=NOON + 1), NOON
    ),
    Reason.EXPIRED: lambda: engine().decide("card", card(), person(valid_until=NOON), NOON),
    Reason.NO_CONSENT: lambda: engine().decide("face", face(), person(face_consent=False), NOON),
    Reason.METHOD_NOT_ALLOWED: lambda: engine().decide("card", pin(), person(), NOON),
    Reason.LOCKED_OUT: lambda: engine().decide("card", card(), person(locked_out=True), NOON),
    Reason.ANTI_PASSBACK: _anti_passback,
    Reason.FACE_MISMATCH: lambda: _combination(
        "face_card", card(), face("p1", result=FaceResult.NO_MATCH, one_to_one=True)
    ),
    Reason.CREDENTIAL_MISMATCH: _credential_mismatch,
    Reason.NOT_PERMITTED: lambda: engine().decide(
        "no_visitors", card(), person(role=Role.VISITOR), NOON
    ),
    Reason.STALE_DECISION: lambda: engine().decide("face", face(ts=NOON - 5), person(), NOON),
    Reason.VISITOR_PIN_USED_UP: lambda: engine().decide(
        "pin", pin(kind=PinKind.VISITOR, uses_left=0), person(role=Role.VISITOR), NOON
    ),
    Reason.SECOND_FACTOR_REQUIRED: lambda: engine().decide("card_pin", card(), person(), NOON),
    Reason.SECOND_FACTOR_TIMEOUT: _timeout,
    Reason.DURESS: lambda: engine().decide("pin", pin(kind=PinKind.DURESS), person(), NOON),
}


def test_every_reason_has_a_scenario() -> None:
    assert set(SCENARIOS) == set(Reason)


@pytest.mark.parametrize("reason", list(Reason))
def test_reason_is_reachable(reason: Reason) -> None:
    decision = SCENARIOS[reason]()
    assert decision.reason is reason
    assert decision.granted == (reason in {Reason.GRANTED, Reason.DURESS})


def test_camera_to_relay_end_to_end() -> None:
    """Frames -> fusion -> policy -> freshness check at the relay."""
    tracker = ApproachTracker(FusionSettings())
    e = engine()
    outcomes = tracker.observe("cam", NOON - 0.2, [FaceMatch("p1", live=True)])
    outcomes += tracker.observe("cam", NOON - 0.1, [FaceMatch("p1", live=True)])
    [rec] = outcomes
    assert isinstance(rec, Recognised)
    presented = as_presented(rec)
    assert presented is not None
    decision = e.decide("face", CredentialsPresented(face=presented), person(), NOON)
    assert decision.granted
    assert decision.evidence_ts == NOON - 0.1
    assert is_fresh(decision, NOON + 0.3, 500)  # relay driven promptly
    assert not is_fresh(decision, NOON + 0.5, 500)  # relay late: must not open


def test_one_to_one_after_card_end_to_end() -> None:
    """face+card: the card claims p1, frames are verified 1:1 against p1 and fused."""
    e = engine()
    first = e.decide("face_card", card(), person(), NOON)
    pending = e.pending_for("face_card", "", NOON)
    assert first.reason is Reason.SECOND_FACTOR_REQUIRED
    assert pending is not None
    claimed = pending.person_id
    tracker = ApproachTracker(FusionSettings())
    verified = [FaceMatch(claimed, live=True)]  # gallery.verify(probe, claimed) was True
    tracker.observe("cam", NOON + 1.0, verified)
    [rec] = tracker.observe("cam", NOON + 1.1, verified)
    presented = as_presented(rec, claimed=claimed)
    assert presented is not None
    d = e.decide("face_card", CredentialsPresented(face=presented), person(), NOON + 1.2)
    assert d.granted
    assert d.reason is Reason.GRANTED
