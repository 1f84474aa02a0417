"""Policy engine: methods, combinations, pending factors, person rules, anti-passback."""

from __future__ import annotations

import pytest

from gateway.access import (
    FLAG_ANTI_PASSBACK,
    FLAG_LIVENESS_ADVISORY,
    AccessGroup,
    AntiPassbackPair,
    CardPresented,
    CredentialsPresented,
    DoorPolicy,
    FaceMode,
    FacePresented,
    FaceResult,
    Factor,
    Method,
    PinKind,
    PinPresented,
    PolicyEngine,
    Reason,
    Role,
)
from gateway.errors import ConfigError
from tests.access.helpers import DOORS, GROUPS, NOON, TZ_NAME, card, engine, face, person, pin


def test_single_methods_grant() -> None:
    e = engine()
    for door_name, presented in (("card", card()), ("pin", pin()), ("face", face())):
        d = e.decide(door_name, presented, person(), NOON)
        assert d.granted, door_name
        assert d.reason is Reason.GRANTED
        assert d.person_id == "p1"
        assert d.method is Method(door_name)
        assert not d.duress
        assert not d.consume_visitor_use
        assert d.door == door_name
        assert d.decided_at == NOON


def test_method_not_allowed_for_other_factors() -> None:
    e = engine()
    assert e.decide("card", pin(), person(), NOON).reason is Reason.METHOD_NOT_ALLOWED
    assert e.decide("pin", card(), person(), NOON).reason is Reason.METHOD_NOT_ALLOWED
    assert e.decide("card", face(), person(), NOON).reason is Reason.METHOD_NOT_ALLOWED
    both = CredentialsPresented(card=CardPresented("p1"), pin=PinPresented("p1"))
    assert e.decide("card", both, person(), NOON).reason is Reason.METHOD_NOT_ALLOWED


def test_unknown_credentials() -> None:
    e = engine()
    assert e.decide("card", card(None), None, NOON).reason is Reason.UNKNOWN_CARD
    assert e.decide("pin", pin(None), None, NOON).reason is Reason.INVALID_PIN
    d = e.decide("face", face(None), None, NOON)
    assert d.reason is Reason.UNKNOWN_FACE
    assert d.person_id is None
    # Resolved, but the person is gone by the time facts are loaded.
    assert e.decide("card", card("ghost"), None, NOON).reason is Reason.UNKNOWN_CARD
    assert e.decide("pin", pin("ghost"), None, NOON).reason is Reason.INVALID_PIN
    assert e.decide("face", face("ghost"), None, NOON).reason is Reason.UNKNOWN_FACE


def test_wiring_errors_raise() -> None:
    e = engine()
    with pytest.raises(ConfigError, match="nowhere"):
        e.decide("nowhere", card(), person(), NOON)
    with pytest.raises(ValueError, match="nothing presented"):
        e.decide("card", CredentialsPresented(), person(), NOON)
    with pytest.raises(ValueError, match="another person"):
        e.decide("card", card("p1"), person("p2"), NOON)


def test_constructor_validates() -> None:
    with pytest.raises(ConfigError, match="Mars/Olympus"):
        PolicyEngine(DOORS, GROUPS, "Mars/Olympus")
    with pytest.raises(ConfigError, match="ghost"):
        PolicyEngine(DOORS, GROUPS, TZ_NAME, anti_passback=[AntiPassbackPair("in", "ghost")])
    bad = {"d": DoorPolicy(frozenset({Method.CARD}), access_groups=frozenset({"nobody"}))}
    with pytest.raises(ConfigError, match="nobody"):
        PolicyEngine(bad, GROUPS, TZ_NAME)
    with pytest.raises(ValueError, match="at least one method"):
        DoorPolicy(frozenset())
    with pytest.raises(ValueError, match="two different doors"):
        AntiPassbackPair("a", "a")


def test_face_mode() -> None:
    e = engine()
    assert e.face_mode("face") is FaceMode.IDENTIFY
    assert e.face_mode("face_card") is FaceMode.VERIFY_ONLY
    assert e.face_mode("face_pin") is FaceMode.VERIFY_ONLY
    assert e.face_mode("card") is FaceMode.NONE


# ------------------------------------------------------------------ face factor verdicts
def test_face_verdicts() -> None:
    e = engine()
    assert e.decide("face", face(result=FaceResult.SPOOF), person(), NOON).reason is (
        Reason.SPOOF_SUSPECTED
    )
    assert e.decide("face", face(None, result=FaceResult.LOW_QUALITY), None, NOON).reason is (
        Reason.LOW_QUALITY
    )
    # Advisory liveness flag is a spoof at a 'required' door, a flagged grant at 'advisory'.
    assert e.decide("face", face(flagged=True), person(), NOON).reason is Reason.SPOOF_SUSPECTED
    d = e.decide("advisory", face(flagged=True), person(), NOON)
    assert d.granted
    assert FLAG_LIVENESS_ADVISORY in d.flags


def test_stale_face_never_opens() -> None:
    e = engine()
    ok = e.decide("face", face(ts=NOON - 0.5), person(), NOON)
    assert ok.granted
    assert ok.evidence_ts == NOON - 0.5
    assert e.decide("face", face(ts=NOON - 0.501), person(), NOON).reason is Reason.STALE_DECISION
    assert e.decide("face", face(ts=NOON + 1), person(), NOON).reason is Reason.STALE_DECISION
    slow = PolicyEngine(
        {"d": DoorPolicy(frozenset({Method.FACE, Method.CARD}), max_decision_age_ms=2000)},
        GROUPS,
        TZ_NAME,
    )
    assert slow.decide("d", face(ts=NOON - 1.5), person(), NOON).granted


def test_face_needs_consent() -> None:
    e = engine()
    d = e.decide("face", face(), person(face_consent=False), NOON)
    assert d.reason is Reason.NO_CONSENT
    assert not d.granted
    # Card still works for the same person at the same door (face is never the only way in).
    assert e.decide("face", card(), person(face_consent=False), NOON).granted


def test_one_to_one_face_alone_is_not_a_method() -> None:
    e = engine()
    d = e.decide("face", face(one_to_one=True), person(), NOON)
    assert d.reason is Reason.METHOD_NOT_ALLOWED


# ------------------------------------------------------------------ combinations
def test_card_then_pin() -> None:
    e = engine()
    first = e.decide("card_pin", card(), person(), NOON)
    assert not first.granted
    assert first.reason is Reason.SECOND_FACTOR_REQUIRED
    assert first.expects == {Factor.PIN}
    assert first.person_id == "p1"
    pending = e.pending_for("card_pin", "", NOON + 1)
    assert pending is not None
    assert pending.person_id == "p1"
    assert pending.expires_at == NOON + 10
    d = e.decide("card_pin", pin(), person(), NOON + 3)
    assert d.granted
    assert d.method is Method.CARD_PIN
    assert e.pending_for("card_pin", "", NOON + 3) is None


def test_pin_then_card() -> None:
    e = engine()
    assert e.decide("card_pin", pin(), person(), NOON).expects == {Factor.CARD}
    assert e.decide("card_pin", card(), person(), NOON + 1).granted


def test_card_and_pin_together() -> None:
    both = CredentialsPresented(card=CardPresented("p1"), pin=PinPresented("p1"))
    assert engine().decide("card_pin", both, person(), NOON).granted


def test_pin_of_another_person_is_credential_mismatch() -> None:
    e = engine()
    e.decide("card_pin", card("p1"), person("p1"), NOON)
    d = e.decide("card_pin", pin("p2"), person("p2"), NOON + 1)
    assert d.reason is Reason.CREDENTIAL_MISMATCH
    assert not d.granted
    assert e.pending_for("card_pin", "", NOON + 1) is None  # must start over


def test_wrong_pin_clears_pending() -> None:
    e = engine()
    e.decide("card_pin", card(), person(), NOON)
    assert e.decide("card_pin", pin(None), person(), NOON + 1).reason is Reason.INVALID_PIN
    assert e.pending_for("card_pin", "", NOON + 1) is None
    # The PIN alone now only starts a new sequence.
    assert e.decide("card_pin", pin(), person(), NOON + 2).reason is Reason.SECOND_FACTOR_REQUIRED


def test_new_card_restarts_sequence() -> None:
    e = engine()
    e.decide("card_pin", card("p1"), person("p1"), NOON)
    again = e.decide("card_pin", card("p2"), person("p2"), NOON + 1)
    assert again.reason is Reason.SECOND_FACTOR_REQUIRED
    assert again.person_id == "p2"
    assert e.decide("card_pin", pin("p2"), person("p2"), NOON + 2).granted


def test_late_second_factor_never_completes_the_old_one() -> None:
    e = engine()
    e.decide("card_pin", card(), person(), NOON)
    d = e.decide("card_pin", pin(), person(), NOON + 10)
    assert not d.granted
    assert d.reason is Reason.SECOND_FACTOR_REQUIRED  # the PIN starts a new sequence
    assert d.expects == {Factor.CARD}
    [timeout] = e.poll(NOON + 10)
    assert timeout.reason is Reason.SECOND_FACTOR_TIMEOUT
    assert not timeout.granted
    assert timeout.person_id == "p1"
    assert timeout.method is Method.CARD
    assert e.poll(NOON + 11) == []  # reported once
    # Somebody else's card later is not eaten by the stale PIN either.
    other = e.decide("card_pin", card("p2"), person("p2"), NOON + 25)
    assert other.reason is Reason.SECOND_FACTOR_REQUIRED
    assert other.person_id == "p2"
    [late_pin] = e.poll(NOON + 25)
    assert late_pin.method is Method.PIN


def test_second_factor_timeout_from_poll() -> None:
    e = engine()
    e.decide("card_pin", card(), person(), NOON)
    assert e.poll(NOON + 9.9) == []
    [d] = e.poll(NOON + 10)
    assert d.reason is Reason.SECOND_FACTOR_TIMEOUT
    assert d.door == "card_pin"
    assert d.method is Method.CARD
    assert e.poll(NOON + 11) == []
    assert e.pending_for("card_pin", "", NOON + 11) is None


def test_pending_is_per_reader() -> None:
    e = engine()
    e.decide("card_pin", card(reader="outside"), person(), NOON)
    d = e.decide("card_pin", pin(reader="inside"), person(), NOON + 1)
    assert d.reason is Reason.SECOND_FACTOR_REQUIRED  # not merged with the other reader
    assert e.decide("card_pin", pin(reader="outside"), person(), NOON + 2).granted


def test_face_card_is_one_to_one_after_the_claim() -> None:
    e = engine()
    first = e.decide("face_card", card(), person(), NOON)
    assert first.reason is Reason.SECOND_FACTOR_REQUIRED
    assert first.expects == {Factor.FACE}
    # A 1:N identification is refused and the claim is kept.
    assert e.decide("face_card", face(ts=NOON + 1), person(), NOON + 1).reason is (
        Reason.METHOD_NOT_ALLOWED
    )
    pending = e.pending_for("face_card", "", NOON + 1)
    assert pending is not None
    assert pending.person_id == "p1"  # whom to verify 1:1
    d = e.decide("face_card", face(ts=NOON + 2, one_to_one=True), person(), NOON + 2)
    assert d.granted
    assert d.method is Method.FACE_CARD
    assert d.evidence_ts == NOON + 2


def test_face_alone_is_refused_at_a_combination_door() -> None:
    e = engine()
    d = e.decide("face_card", face(), person(), NOON)
    assert d.reason is Reason.METHOD_NOT_ALLOWED
    assert e.pending_for("face_card", "", NOON) is None  # a face never starts a sequence


def test_face_mismatch_in_one_to_one() -> None:
    e = engine()
    e.decide("face_card", card(), person(), NOON)
    d = e.decide("face_card", face("p1", result=FaceResult.NO_MATCH, one_to_one=True), None, NOON)
    assert d.reason is Reason.FACE_MISMATCH
    assert d.person_id == "p1"
    e.decide("face_card", card(), person(), NOON)
    d = e.decide("face_card", face("p2", one_to_one=True), person("p2"), NOON)
    assert d.reason is Reason.FACE_MISMATCH


def test_low_quality_second_factor_keeps_the_claim() -> None:
    e = engine()
    e.decide("face_pin", pin(), person(), NOON)
    low = face("p1", result=FaceResult.LOW_QUALITY, one_to_one=True)
    assert e.decide("face_pin", low, person(), NOON).reason is Reason.LOW_QUALITY
    assert e.decide("face_pin", face(one_to_one=True), person(), NOON).granted


def test_combination_without_consent() -> None:
    e = engine()
    d = e.decide("face_card", card(), person(face_consent=False), NOON)
    assert d.reason is Reason.NO_CONSENT
    # PIN alone still opens that door.
    assert e.decide("face_card", pin(), person(face_consent=False), NOON).granted


def test_expects_drops_face_without_consent() -> None:
    doors = {"d": DoorPolicy(frozenset({Method.FACE_PIN, Method.CARD_PIN}))}
    e = PolicyEngine(doors, GROUPS, TZ_NAME)
    assert e.decide("d", pin(), person(), NOON).expects == {Factor.FACE, Factor.CARD}
    e2 = PolicyEngine(doors, GROUPS, TZ_NAME)
    assert e2.decide("d", pin(), person(face_consent=False), NOON).expects == {Factor.CARD}


def test_first_factor_checks_person_rules_before_prompting() -> None:
    e = engine()
    d = e.decide("card_pin", card(), person(valid_until=NOON - 1), NOON)
    assert d.reason is Reason.EXPIRED
    assert e.pending_for("card_pin", "", NOON) is None


# ------------------------------------------------------------------ person rules
def test_lockouts() -> None:
    e = engine()
    locked_reader = CredentialsPresented(card=CardPresented(None), locked_out=True)
    d = e.decide("card", locked_reader, None, NOON)
    assert d.reason is Reason.LOCKED_OUT  # before the card is even looked at
    assert e.decide("card", card(), person(locked_out=True), NOON).reason is Reason.LOCKED_OUT


def test_validity_window() -> None:
    e = engine()
    p = person(valid_from=NOON, valid_until=NOON + 3600)
    assert e.decide("card", card(), p, NOON - 0.001).reason is Reason.NOT_YET_VALID
    assert e.decide("card", card(), p, NOON).granted
    assert e.decide("card", card(), p, NOON + 3599).granted
    assert e.decide("card", card(), p, NOON + 3600).reason is Reason.EXPIRED


def test_groups_and_roles_per_door() -> None:
    e = engine()
    d = e.decide("staff_only", card(), person(access_group="residents"), NOON)
    assert d.reason is Reason.NOT_PERMITTED
    assert e.decide("staff_only", card(), person(access_group="staff"), NOON).granted
    visitor = person(role=Role.VISITOR)
    assert e.decide("no_visitors", card(), visitor, NOON).reason is Reason.NOT_PERMITTED
    assert e.decide("card", card(), person(access_group="nobody"), NOON).reason is (
        Reason.NOT_PERMITTED
    )


def test_visitor_pin_uses() -> None:
    e = engine()
    visitor = person(role=Role.VISITOR)
    d = e.decide("pin", pin(kind=PinKind.VISITOR, uses_left=2, ref=7), visitor, NOON)
    assert d.granted
    assert d.consume_visitor_use
    assert d.visitor_pin_ref == 7
    last = e.decide("pin", pin(kind=PinKind.VISITOR, uses_left=1, ref=7), visitor, NOON)
    assert last.granted
    assert last.consume_visitor_use
    used = e.decide("pin", pin(kind=PinKind.VISITOR, uses_left=0, ref=7), visitor, NOON)
    assert used.reason is Reason.VISITOR_PIN_USED_UP
    assert not used.consume_visitor_use
    unlimited = e.decide("pin", pin(kind=PinKind.VISITOR, ref=7), visitor, NOON)
    assert unlimited.granted
    assert not unlimited.consume_visitor_use
    # A normal PIN never consumes anything.
    assert not e.decide("pin", pin(uses_left=3, ref=8), person(), NOON).consume_visitor_use


def test_visitor_pin_expiry() -> None:
    e = engine()
    visitor = person(role=Role.VISITOR)
    live = pin(kind=PinKind.VISITOR, expires_at=NOON + 1, uses_left=5)
    assert e.decide("pin", live, visitor, NOON).granted
    assert e.decide("pin", live, visitor, NOON + 1).reason is Reason.EXPIRED


def test_duress_pin_opens_and_alarms_once() -> None:
    e = engine()
    d = e.decide("pin", pin(kind=PinKind.DURESS), person(), NOON)
    assert d.granted
    assert d.duress
    assert d.reason is Reason.DURESS
    # In a combination: alarm on the PIN entry, a duress grant at the end, no second alarm.
    first = e.decide("card_pin", pin(kind=PinKind.DURESS), person(), NOON)
    assert first.reason is Reason.SECOND_FACTOR_REQUIRED
    assert first.duress
    last = e.decide("card_pin", card(), person(), NOON + 1)
    assert last.granted
    assert last.reason is Reason.DURESS
    assert not last.duress
    # A denied duress entry still raises the alarm.
    denied = e.decide("pin", pin(kind=PinKind.DURESS), person(valid_until=NOON), NOON)
    assert not denied.granted
    assert denied.duress


# ------------------------------------------------------------------ anti-passback
def test_anti_passback_hard() -> None:
    e = engine()
    p = person()
    d = e.decide("in", card(), p, NOON)
    assert d.granted
    # Not committed (relay never driven): no passage recorded.
    assert e.decide("in", card(), p, NOON + 1).granted
    e.commit(d, NOON + 1)
    again = e.decide("in", card(), p, NOON + 2)
    assert again.reason is Reason.ANTI_PASSBACK
    assert not again.granted
    e.commit(again, NOON + 2)  # a denial records nothing
    other = e.decide("in", card("p2"), person("p2"), NOON + 2)
    assert other.granted  # per person
    out = e.decide("out", card(), p, NOON + 3)
    assert out.granted
    e.commit(out, NOON + 3)
    assert e.decide("in", card(), p, NOON + 4).granted


def test_anti_passback_soft_grants_with_flag() -> None:
    e = engine()
    d = e.decide("in_soft", card(), person(), NOON)
    e.commit(d, NOON)
    again = e.decide("in_soft", card(), person(), NOON + 5)
    assert again.granted
    assert FLAG_ANTI_PASSBACK in again.flags


def test_anti_passback_forgets() -> None:
    pair = AntiPassbackPair("in", "out", forget_after_s=3600)
    e = PolicyEngine(DOORS, GROUPS, TZ_NAME, anti_passback=[pair])
    e.commit(e.decide("in", card(), person(), NOON), NOON)
    assert e.decide("in", card(), person(), NOON + 3599).reason is Reason.ANTI_PASSBACK
    assert e.decide("in", card(), person(), NOON + 3600).granted
    assert e.passback.inside(pair) == {"p1"}
    e.passback.prune(NOON + 3600)
    assert e.passback.inside(pair) == frozenset()


def test_unconfigured_groups_default_to_always() -> None:
    e = PolicyEngine({"d": DoorPolicy(frozenset({Method.CARD}))}, {"r": AccessGroup()}, "UTC")
    assert e.decide("d", card(), person(access_group="r"), 0.0).granted
    assert e.decide("d", card(), person(access_group="r"), 4e9).granted


def test_face_evidence_survives_into_combination() -> None:
    e = engine()
    e.decide("face_pin", pin(), person(), NOON)
    presented = CredentialsPresented(
        face=FacePresented(FaceResult.MATCH, NOON - 0.6, "p1", one_to_one=True)
    )
    assert e.decide("face_pin", presented, person(), NOON).reason is Reason.STALE_DECISION
    assert e.pending_for("face_pin", "", NOON) is not None  # still waiting for a fresh face


def test_value_validation() -> None:
    with pytest.raises(ValueError, match="second_factor_timeout_s"):
        DoorPolicy(frozenset({Method.CARD}), second_factor_timeout_s=0)
    with pytest.raises(ValueError, match="max_decision_age_ms"):
        DoorPolicy(frozenset({Method.CARD}), max_decision_age_ms=0)
    with pytest.raises(ValueError, match="forget_after_s"):
        AntiPassbackPair("a", "b", forget_after_s=0)


def test_method_factor_sets() -> None:
    assert Method.CARD_PIN.factors == {Factor.CARD, Factor.PIN}
    assert Method.for_factors(frozenset({Factor.PIN, Factor.FACE})) is Method.FACE_PIN
    assert Method.for_factors(frozenset(Factor)) is None
    assert Method.for_factors(frozenset()) is None


def test_prune_keeps_pairs_without_expiry() -> None:
    e = engine()
    e.commit(e.decide("in", card(), person(), NOON), NOON)
    e.passback.prune(NOON + 1e6)
    assert e.decide("in", card(), person(), NOON + 1e6).reason is Reason.ANTI_PASSBACK
