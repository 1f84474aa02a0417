"""Issue #18 item 8: PIN lockout is per claimed identity for card+PIN (wrong PINs typed with
one card never lock out another card holder), a limiter per reader remains for anonymous
PIN-only (1:N) entry, and the daily guessing budget follows from the configured policy."""

from __future__ import annotations

import pytest

from gateway.credentials.hashing import LockedOutError, LockoutEvent, LockoutPolicy
from gateway.credentials.pin_budget import DAY_S, guesses_per_day, success_probability
from tests.credentials.test_credentials import make


def test_wrong_pins_with_one_card_do_not_lock_out_another_card_holder() -> None:
    events: list[LockoutEvent] = []
    c = make(events)
    c.set_pin("p1", "111111", now=0.0)
    c.set_pin("p2", "222222", now=0.0)
    for t in (1.0, 2.0, 3.0):  # a thief with p1's card guesses at the gate reader
        assert c.verify_pin_for("p1", f"90000{int(t)}", reader="gate", now=t) is None
    # p1 is locked out, even with the right PIN ...
    with pytest.raises(LockedOutError):
        c.verify_pin_for("p1", "111111", reader="gate", now=5.0)
    # ... the next resident, with their own card, is not; nor is PIN-only entry
    hit = c.verify_pin_for("p2", "222222", reader="gate", now=5.0)
    assert hit is not None
    assert hit.person_id == "p2"
    assert c.locked_for("reader", "gate", 5.0) == 0.0
    assert c.identify_pin("222222", reader="gate", now=6.0) is not None
    assert [(e.scope, e.subject) for e in events] == [("person", "p1")]


def test_anonymous_pin_guessing_locks_pin_only_entry_but_not_card_holders() -> None:
    events: list[LockoutEvent] = []
    c = make(events)
    c.set_pin("p1", "111111", now=0.0)
    for t in (1.0, 2.0, 3.0):
        assert c.identify_pin(f"90000{int(t)}", reader="gate", now=t) is None
    assert events == [LockoutEvent("reader", "gate", 3, 33.0, 3.0)]
    with pytest.raises(LockedOutError):
        c.identify_pin("111111", reader="gate", now=4.0)  # the global 1:N limiter holds
    # the card holder (card+PIN: a claimed identity) is not locked out by the guessers
    hit = c.verify_pin_for("p1", "111111", reader="gate", now=4.0)
    assert hit is not None
    assert hit.person_id == "p1"


def test_the_failure_count_is_kept_for_a_day() -> None:
    """The counter used to reset after 15 min, so 3 fresh guesses came back every 15 min."""
    c = make()
    c.set_pin("p1", "111111", now=0.0)
    for t in (1.0, 2.0, 3.0):
        c.verify_pin_for("p1", f"90000{int(t)}", reader="gate", now=t)
    # an hour later, one more wrong PIN locks again at once (the 4th failure: 60 s)
    assert c.verify_pin_for("p1", "900004", reader="gate", now=3600.0) is None
    assert c.locked_for("person", "p1", 3600.0) == pytest.approx(60.0)


def test_daily_guessing_budget_of_the_default_policy() -> None:
    """The README's numbers, computed from the defaults so that they cannot drift:
    lockout after 3 failures, 30 s doubling to 1 h, counter kept 24 h ->
    3 + 7 (30 s .. 1920 s, 3810 s in all) + floor((86400 - 3810) / 3600) = 32 guesses in the
    worst 24 h (24 a day after the first); P = 1 - C(10^d - n, g) / C(10^d, g) <= g*n/10^d."""
    p = LockoutPolicy()
    assert (p.free_attempts, p.base_s, p.factor, p.max_s, p.reset_after_s) == (
        3,
        30.0,
        2.0,
        3600.0,
        86400.0,
    )
    g = guesses_per_day(p)
    ramp = sum(min(p.max_s, p.base_s * p.factor**k) for k in range(7))
    assert ramp == 3810.0
    assert g == p.free_attempts + 7 + int((DAY_S - ramp) // p.max_s) == 32
    assert guesses_per_day(p, window_s=30 * DAY_S) - guesses_per_day(p, window_s=29 * DAY_S) == 24
    # card+PIN (one target: the card's own PIN)
    assert success_probability(g, 1, 4) == pytest.approx(3.2e-3)
    assert success_probability(g, 1, 6) == pytest.approx(3.2e-5)
    # PIN-only 1:N at one reader, every enrolled PIN a target
    assert success_probability(g, 100, 6) == pytest.approx(3.195e-3, rel=1e-3)
    assert success_probability(g, 500, 6) == pytest.approx(1.588e-2, rel=1e-3)
    assert success_probability(g, 100, 4) == pytest.approx(0.2754, rel=1e-3)
    # a counter forgotten while still locked (the old 15-minute reset) bounds nothing
    with pytest.raises(ValueError, match="reset_after_s"):
        guesses_per_day(LockoutPolicy(reset_after_s=900.0))
