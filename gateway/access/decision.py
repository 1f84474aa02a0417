"""Access decision vocabulary: reason codes, methods, factors and the frozen ``Decision``."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol


class Reason(StrEnum):
    """Why a door opened or stayed shut; every ``Decision`` carries exactly one."""

    GRANTED = "granted"
    UNKNOWN_FACE = "unknown_face"
    UNKNOWN_CARD = "unknown_card"
    INVALID_PIN = "invalid_pin"
    LOW_QUALITY = "low_quality"
    SPOOF_SUSPECTED = "spoof_suspected"
    OUTSIDE_SCHEDULE = "outside_schedule"
    HOLIDAY = "holiday"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    NO_CONSENT = "no_consent"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    LOCKED_OUT = "locked_out"
    ANTI_PASSBACK = "anti_passback"
    FACE_MISMATCH = "face_mismatch"
    CREDENTIAL_MISMATCH = "credential_mismatch"
    NOT_PERMITTED = "not_permitted"
    STALE_DECISION = "stale_decision"
    VISITOR_PIN_USED_UP = "visitor_pin_used_up"
    SECOND_FACTOR_REQUIRED = "second_factor_required"
    SECOND_FACTOR_TIMEOUT = "second_factor_timeout"
    DURESS = "duress"


class Factor(StrEnum):
    """One kind of credential."""

    FACE = "face"
    CARD = "card"
    PIN = "pin"


class Method(StrEnum):
    """A way through a door. Combinations need every factor.

    In ``face+card`` and ``face+pin`` the card or PIN claims the identity and the face only
    confirms it 1:1; the face never identifies 1:N in a combination.
    """

    FACE = "face"
    CARD = "card"
    PIN = "pin"
    CARD_PIN = "card+pin"
    FACE_CARD = "face+card"
    FACE_PIN = "face+pin"

    @property
    def factors(self) -> frozenset[Factor]:
        """The factors this method needs, all of them."""
        return frozenset(Factor(part) for part in self.value.split("+"))

    @classmethod
    def for_factors(cls, factors: frozenset[Factor]) -> Method | None:
        """The method made of exactly these factors, if there is one."""
        for method in cls:
            if method.factors == factors:
                return method
        return None

    @property
    def needs_face(self) -> bool:
        """True when the method cannot work while the face path is down."""
        return "face" in self.value

    @property
    def needs_reader(self) -> bool:
        """True when the method needs a card reader or keypad."""
        return self is not Method.FACE


class LivenessPolicy(StrEnum):
    """What a failed passive liveness check does at a door."""

    REQUIRED = "required"  # not live -> the face never counts as a match
    ADVISORY = "advisory"  # not live -> recorded, face still counts
    OFF = "off"  # liveness not consulted

    def face_counts(self, live: bool | None) -> bool:
        """Whether a face with this liveness outcome (None = unknown) may be matched."""
        if self is LivenessPolicy.REQUIRED:
            return live is True
        return True

    def allows(self, probability: float | None, threshold: float) -> bool:
        """Whether a face with this live probability (None = no model) may be matched."""
        live = None if probability is None else probability >= threshold
        return self.face_counts(live)


FLAG_LIVENESS_ADVISORY = "liveness_advisory"
"""Granted although passive liveness failed, because the door's policy is advisory."""
FLAG_ANTI_PASSBACK = "anti_passback"
"""Granted although it breaks anti-passback, because the pair is in soft mode."""
FLAG_TAILGATING = "tailgating_suspected"
"""More people (or door cycles) than unlocks were seen for this event."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one access evaluation.

    ``evidence_ts`` is the timestamp of the newest face frame the decision rests on (or the
    decision time when no face was involved); check it with :func:`is_fresh` right before
    driving the relay. ``expects`` lists the factors that may complete a
    ``second_factor_required`` decision. ``duress`` is set on the one decision where a duress
    PIN was entered (raise the silent alarm on it, once); a grant that rests on a duress PIN
    has reason ``duress`` (the door opens, so the coercer notices nothing).
    ``consume_visitor_use`` asks the caller to
    decrement the uses left of the visitor PIN ``visitor_pin_ref``.
    """

    door: str
    granted: bool
    reason: Reason
    decided_at: float
    evidence_ts: float
    person_id: str | None = None
    method: Method | None = None
    duress: bool = False
    consume_visitor_use: bool = False
    visitor_pin_ref: int | None = None
    flags: frozenset[str] = frozenset()
    expects: frozenset[Factor] = frozenset()

    def with_flag(self, flag: str) -> Decision:
        """A copy with ``flag`` added."""
        return replace(self, flags=self.flags | {flag})


class Evidence(Protocol):
    """Anything that carries the timestamp of the newest frame it rests on."""

    @property
    def evidence_ts(self) -> float:
        """Timestamp (same clock as ``now``) of the newest contributing observation."""
        ...


def is_fresh(evidence: Evidence, now: float, max_age_ms: float) -> bool:
    """True when ``evidence`` is at most ``max_age_ms`` old at ``now``.

    Evidence from the future (another clock, a bug) is never fresh: fail closed.
    """
    age_ms = (now - evidence.evidence_ts) * 1000.0
    return 0.0 <= age_ms <= max_age_ms
