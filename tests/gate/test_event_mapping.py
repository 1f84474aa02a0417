"""Every decision reason and method has its explicit event code (issue #14)."""

from __future__ import annotations

import logging

import pytest

from gateway.access import Decision, Method, Reason
from gateway.gate.event_mapping import ACCESS_METHODS, DENY_REASONS, access_method, deny_reason
from gateway.mqtt import events as ev

NOT_DENIALS = {Reason.GRANTED, Reason.DURESS, Reason.SECOND_FACTOR_REQUIRED}


@pytest.mark.parametrize("reason", list(Reason))
def test_every_reason_is_mapped(reason: Reason) -> None:
    assert reason in DENY_REASONS, f"Reason.{reason.name} has no access.denied reason"
    deny = DENY_REASONS[reason]
    if reason in NOT_DENIALS:
        assert deny is None
    else:  # the codes published so far keep their value (docs/events.md)
        assert deny is not None
        assert deny.value == reason.value
        assert deny_reason(reason) is deny


@pytest.mark.parametrize("method", list(Method))
def test_every_method_is_mapped(method: Method) -> None:
    assert method in ACCESS_METHODS, f"Method.{method.name} has no event method"
    assert ACCESS_METHODS[method].value == method.value
    decision = Decision("d", True, Reason.GRANTED, 0.0, 0.0, method=method)
    assert access_method(decision) is ACCESS_METHODS[method]


def test_mappings_hold_nothing_else() -> None:
    assert access_method(Decision("d", False, Reason.UNKNOWN_CARD, 0.0, 0.0)) is None
    assert set(DENY_REASONS) == set(Reason)
    assert set(ACCESS_METHODS) == set(Method)
    assert set(ACCESS_METHODS.values()) == set(ev.AccessMethod)


def test_a_refusal_with_a_grant_reason_is_reported_loudly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="gateway.gate.event_mapping"):
        assert deny_reason(Reason.DURESS) is ev.DenyReason.INVALID_CREDENTIAL
    assert "not a denial" in caplog.text
