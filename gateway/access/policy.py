"""The access policy engine: methods and combinations per door, schedules, validity,
consent, visitor PINs, lockout and anti-passback -> one ``Decision`` with a reason code.

Pure: no I/O; the clock is the ``now`` argument (seconds, the same clock as frame
timestamps, converted to wall clock in the site timezone for schedules, so pass epoch
seconds). The engine keeps two small in-memory states: pending first factors (per door
and reader) and anti-passback passages (recorded by :meth:`PolicyEngine.commit`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.errors import ConfigError

from .antipassback import AntiPassbackMode, AntiPassbackPair, AntiPassbackState
from .decision import (
    FLAG_ANTI_PASSBACK,
    FLAG_LIVENESS_ADVISORY,
    Decision,
    Factor,
    LivenessPolicy,
    Method,
    Reason,
)
from .pending import PendingFactor, PendingFactors
from .presented import CredentialsPresented, FaceResult, PinKind, PinPresented
from .schedule import AccessGroup


class Role(StrEnum):
    """Person roles (same values as the ``people.role`` column)."""

    RESIDENT = "resident"
    VISITOR = "visitor"
    STAFF = "staff"


class FaceMode(StrEnum):
    """How the face may be matched at a door."""

    IDENTIFY = "identify"
    """1:N allowed (``face`` alone is an allowed method); 1:1 after a claim too."""
    VERIFY_ONLY = "verify_only"
    """Only 1:1 against a person claimed by card or PIN (``face+card``/``face+pin``)."""
    NONE = "none"
    """No face method: do not process faces for this door."""


@dataclass(frozen=True, slots=True)
class PersonFacts:
    """What the policy needs to know about a person (from the people/consent tables).

    ``face_consent`` must be True only for a valid, current face-processing consent
    (granted, not withdrawn, not awaiting re-notice past its grace, guardian consent for a
    minor). ``locked_out`` is the person-level lockout state.
    """

    person_id: str
    role: Role = Role.RESIDENT
    access_group: str = "residents"
    valid_from: float | None = None
    valid_until: float | None = None
    face_consent: bool = False
    locked_out: bool = False


@dataclass(frozen=True, slots=True)
class DoorPolicy:
    """Per-door rules.

    ``access_groups`` None lets every configured group through; ``roles`` None every role.
    ``second_factor_timeout_s`` bounds the wait for the second factor of a combination;
    ``max_decision_age_ms`` is the oldest face evidence accepted.
    """

    methods: frozenset[Method]
    liveness: LivenessPolicy = LivenessPolicy.REQUIRED
    access_groups: frozenset[str] | None = None
    roles: frozenset[Role] | None = None
    second_factor_timeout_s: float = 10.0
    max_decision_age_ms: float = 500.0

    def __post_init__(self) -> None:
        if not self.methods:
            raise ValueError("a door needs at least one method")
        if self.second_factor_timeout_s <= 0:
            raise ValueError("second_factor_timeout_s must be positive")
        if self.max_decision_age_ms <= 0:
            raise ValueError("max_decision_age_ms must be positive")

    @property
    def face_mode(self) -> FaceMode:
        """Whether faces may be identified 1:N, only verified 1:1, or not used."""
        if Method.FACE in self.methods:
            return FaceMode.IDENTIFY
        if self.methods & {Method.FACE_CARD, Method.FACE_PIN}:
            return FaceMode.VERIFY_ONLY
        return FaceMode.NONE


# Denials after which a pending first factor survives (nothing was wrong with identity).
_KEEP_PENDING = frozenset({Reason.LOW_QUALITY, Reason.STALE_DECISION, Reason.METHOD_NOT_ALLOWED})


class PolicyEngine:
    """Decide access at doors. See :meth:`decide`."""

    def __init__(
        self,
        doors: Mapping[str, DoorPolicy],
        groups: Mapping[str, AccessGroup],
        timezone: str,
        *,
        anti_passback: Iterable[AntiPassbackPair] = (),
    ) -> None:
        problems: list[tuple[str, str, str]] = []
        try:
            self.tz = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(("site.timezone", timezone, "unknown IANA timezone"))
        pairs = tuple(anti_passback)
        for pair in pairs:
            for door in (pair.entry, pair.exit):
                if door not in doors:
                    problems.append(("anti_passback", door, "door is not configured"))
        for name, policy in doors.items():
            for group in sorted(policy.access_groups or ()):
                if group not in groups:
                    problems.append(
                        (f"doors.{name}.access_groups", group, "access group is not defined")
                    )
        if problems:
            raise ConfigError(problems)
        self.doors = dict(doors)
        self.groups = dict(groups)
        self.pending = PendingFactors()
        self._timed_out: list[PendingFactor] = []
        self.passback = AntiPassbackState(pairs)

    # ----------------------------------------------------------------- helpers for wiring
    def face_mode(self, door: str) -> FaceMode:
        """How faces may be matched at ``door`` (run 1:N only for ``IDENTIFY``)."""
        return self._door(door).face_mode

    def pending_for(self, door: str, reader: str, now: float) -> PendingFactor | None:
        """The live pending first factor (whom to verify 1:1, what to prompt for)."""
        return self.pending.get(door, reader, now)

    def poll(self, now: float) -> list[Decision]:
        """``second_factor_timeout`` decisions for pending first factors that expired.

        Call on a timer (e.g. every second); each expired first factor is reported once.
        """
        expired = [*self._timed_out, *self.pending.expire(now)]
        self._timed_out = []
        return [self._timeout(p, now) for p in expired]

    def commit(self, decision: Decision, now: float) -> None:
        """Record a granted passage (call when the relay is driven for ``decision``)."""
        if decision.granted and decision.person_id is not None:
            self.passback.record(decision.door, decision.person_id, now)

    # ----------------------------------------------------------------------- the decision
    def decide(
        self,
        door: str,
        presented: CredentialsPresented,
        person: PersonFacts | None,
        now: float,
    ) -> Decision:
        """Evaluate ``presented`` at ``door`` for ``person`` at ``now``.

        ``person`` holds the facts of the person the presented factors (plus any pending
        first factor) resolve to, or None when they resolve to nobody / the person is gone.
        Raises ConfigError for an unknown door and ValueError when nothing is presented or
        ``person`` is somebody else than the factors resolve to (a wiring bug).
        """
        policy = self._door(door)
        if not presented.factors:
            raise ValueError(f"door {door}: nothing presented")
        reader = presented.reader
        stored = self.pending.peek(door, reader)
        if stored is not None and stored.expired(now):
            # Too late: the old first factor times out (reported by poll) and what was just
            # presented starts afresh, so a stale factor never completes somebody else's.
            self._timed_out.append(self.pending.clear(door, reader) or stored)
            stored = None
        if stored is not None and stored.presented.factors & presented.factors:
            self.pending.clear(door, reader)  # a new first factor restarts the sequence
            stored = None
        combined = stored.presented.merge(presented) if stored is not None else presented
        decision = self._evaluate(
            door, policy, combined=combined, fresh=presented, person=person, now=now
        )
        if decision.reason is Reason.SECOND_FACTOR_REQUIRED or decision.reason in _KEEP_PENDING:
            return decision
        self.pending.clear(door, reader)
        return decision

    def _evaluate(
        self,
        door: str,
        policy: DoorPolicy,
        *,
        combined: CredentialsPresented,
        fresh: CredentialsPresented,
        person: PersonFacts | None,
        now: float,
    ) -> Decision:
        face = combined.face
        attempt = _Attempt(
            door=door,
            now=now,
            evidence_ts=face.frame_ts if face is not None else now,
            method=Method.for_factors(combined.factors),
            # The alarm is raised once: on the decision where the duress PIN was entered.
            duress=fresh.pin is not None and fresh.pin.kind is PinKind.DURESS,
        )
        if combined.locked_out:
            return attempt.deny(Reason.LOCKED_OUT)
        completes, supersets = _reachable(policy, combined, attempt.method)
        if not completes and not supersets:
            return attempt.deny(Reason.METHOD_NOT_ALLOWED)
        denial = _factor_denial(policy, combined, now)
        if denial is not None:
            return attempt.deny(*denial)
        who = _identify(combined, person)
        if isinstance(who, tuple):
            return attempt.deny(*who)
        if person is None or person.person_id != who:
            raise ValueError(
                f"door {door}: person facts are for another person than the credentials"
            )
        reason = self._person_denial(policy, person, combined.pin, face is not None, now)
        if reason is not None:
            return attempt.deny(reason, who)
        if not completes:
            return self._ask_second_factor(attempt, policy, combined, person, supersets)
        return self._grant(attempt, combined, who)

    def _person_denial(
        self,
        policy: DoorPolicy,
        person: PersonFacts,
        pin: PinPresented | None,
        with_face: bool,
        now: float,
    ) -> Reason | None:
        """Person-level rules: lockout, group and role, validity, consent, visitor PIN,
        schedule."""
        if person.locked_out:
            return Reason.LOCKED_OUT
        group = self.groups.get(person.access_group)
        if (
            group is None
            or (
                policy.access_groups is not None and person.access_group not in policy.access_groups
            )
            or (policy.roles is not None and person.role not in policy.roles)
        ):
            return Reason.NOT_PERMITTED
        if person.valid_from is not None and now < person.valid_from:
            return Reason.NOT_YET_VALID
        if person.valid_until is not None and now >= person.valid_until:
            return Reason.EXPIRED
        if with_face and not person.face_consent:
            return Reason.NO_CONSENT
        if pin is not None and pin.kind is PinKind.VISITOR:
            if pin.expires_at is not None and now >= pin.expires_at:
                return Reason.EXPIRED
            if pin.uses_left is not None and pin.uses_left <= 0:
                return Reason.VISITOR_PIN_USED_UP
        local = dt.datetime.fromtimestamp(now, self.tz).replace(tzinfo=None)
        return group.check(local)

    def _ask_second_factor(
        self,
        attempt: _Attempt,
        policy: DoorPolicy,
        combined: CredentialsPresented,
        person: PersonFacts,
        supersets: list[Method],
    ) -> Decision:
        """Keep the first factor pending and say which factors may complete it."""
        person_id, now = person.person_id, attempt.now
        expects = frozenset(
            f
            for m in supersets
            for f in m.factors - combined.factors
            if f is not Factor.FACE or person.face_consent
        )
        if not expects:
            return attempt.deny(Reason.NO_CONSENT, person_id)
        self.pending.put(
            PendingFactor(
                door=attempt.door,
                reader=combined.reader,
                presented=combined,
                person_id=person_id,
                expects=expects,
                started_at=now,
                expires_at=now + policy.second_factor_timeout_s,
            )
        )
        asked = attempt.deny(Reason.SECOND_FACTOR_REQUIRED, person_id)
        return replace(asked, method=None, expects=expects)

    def _grant(self, attempt: _Attempt, combined: CredentialsPresented, person_id: str) -> Decision:
        """A complete method by a permitted person: grant, unless hard anti-passback."""
        face, pin = combined.face, combined.pin
        flags: set[str] = set()
        if face is not None and face.liveness_flagged:
            flags.add(FLAG_LIVENESS_ADVISORY)
        pair = self.passback.violation(attempt.door, person_id, attempt.now)
        if pair is not None:
            if pair.mode is AntiPassbackMode.HARD:
                return attempt.deny(Reason.ANTI_PASSBACK, person_id)
            flags.add(FLAG_ANTI_PASSBACK)
        under_duress = pin is not None and pin.kind is PinKind.DURESS
        visitor = pin is not None and pin.kind is PinKind.VISITOR
        consume = visitor and pin is not None and pin.uses_left is not None
        return Decision(
            door=attempt.door,
            granted=True,
            reason=Reason.DURESS if under_duress else Reason.GRANTED,
            decided_at=attempt.now,
            evidence_ts=attempt.evidence_ts,
            person_id=person_id,
            method=attempt.method,
            duress=attempt.duress,
            consume_visitor_use=consume,
            visitor_pin_ref=pin.ref if consume and pin is not None else None,
            flags=frozenset(flags),
        )

    def _door(self, door: str) -> DoorPolicy:
        try:
            return self.doors[door]
        except KeyError:
            raise ConfigError([("doors", door, "door is not configured")]) from None

    @staticmethod
    def _timeout(pending: PendingFactor, now: float) -> Decision:
        return Decision(
            door=pending.door,
            granted=False,
            reason=Reason.SECOND_FACTOR_TIMEOUT,
            decided_at=now,
            evidence_ts=pending.started_at,
            person_id=pending.person_id,
            method=Method.for_factors(pending.presented.factors),
        )


Denial = tuple[Reason, str | None]


@dataclass(frozen=True, slots=True)
class _Attempt:
    """What every decision on one presentation shares."""

    door: str
    now: float
    evidence_ts: float
    method: Method | None
    duress: bool

    def deny(self, reason: Reason, person_id: str | None = None) -> Decision:
        return Decision(
            door=self.door,
            granted=False,
            reason=reason,
            decided_at=self.now,
            evidence_ts=self.evidence_ts,
            person_id=person_id,
            method=self.method,
            duress=self.duress,
        )


def _reachable(
    policy: DoorPolicy, combined: CredentialsPresented, method: Method | None
) -> tuple[bool, list[Method]]:
    """Whether these factors complete an allowed method now, and which allowed methods
    one more factor could complete."""
    face, factors = combined.face, combined.factors
    completes = method is not None and method in policy.methods
    supersets = [m for m in policy.methods if factors < m.factors]
    if face is not None:
        if face.one_to_one:
            completes = completes and factors != {Factor.FACE}
            if factors == {Factor.FACE}:
                supersets = []  # a 1:1 result needs a claim first
        elif factors != {Factor.FACE}:
            completes, supersets = False, []  # 1:N never takes part in a combination
        else:
            supersets = []  # a face never claims an identity for a combination
    return completes, supersets


def _claimed(combined: CredentialsPresented) -> str | None:
    """The person a card (else a PIN) claims."""
    card, pin = combined.card, combined.pin
    return card.person_id if card is not None else pin.person_id if pin else None


def _factor_denial(policy: DoorPolicy, combined: CredentialsPresented, now: float) -> Denial | None:
    """Factor-level verdicts: spoof, quality, stale evidence, unknown card/PIN/face."""
    face, card, pin = combined.face, combined.card, combined.pin
    if face is not None:
        if face.result is FaceResult.SPOOF or (
            face.liveness_flagged and policy.liveness is LivenessPolicy.REQUIRED
        ):
            return Reason.SPOOF_SUSPECTED, None
        if face.result is FaceResult.LOW_QUALITY:
            return Reason.LOW_QUALITY, None
        if (now - face.frame_ts) * 1000.0 > policy.max_decision_age_ms or face.frame_ts > now:
            return Reason.STALE_DECISION, None
    if card is not None and card.person_id is None:
        return Reason.UNKNOWN_CARD, None
    if pin is not None and pin.person_id is None:
        return Reason.INVALID_PIN, None
    if face is not None and (face.result is FaceResult.NO_MATCH or face.person_id is None):
        if face.one_to_one:
            return Reason.FACE_MISMATCH, _claimed(combined)
        return Reason.UNKNOWN_FACE, None
    return None


def _identify(combined: CredentialsPresented, person: PersonFacts | None) -> str | Denial:
    """The one person every factor names, or why there is none."""
    face, card, pin = combined.face, combined.card, combined.pin
    ids = {f.person_id for f in (card, pin, face) if f is not None}
    if len(ids) != 1:
        claimed = _claimed(combined)
        if face is not None and face.person_id != claimed:
            return Reason.FACE_MISMATCH, claimed
        return Reason.CREDENTIAL_MISMATCH, None
    person_id = next(iter(ids))
    if person_id is None or person is None:
        if card is not None:
            return Reason.UNKNOWN_CARD, None
        if pin is not None:
            return Reason.INVALID_PIN, None
        return Reason.UNKNOWN_FACE, None
    return person_id
