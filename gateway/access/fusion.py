"""Multi-frame fusion of per-frame face matches into one outcome per approach.

Per camera, an *approach* is continuous presence of faces; it ends when no face has been
seen for ``approach_gap_s``, and then everything about it (unknown faces included) is
forgotten. Within the approach the last ``n`` frames with faces form a window:

- a person is ``Recognised`` when matched, with good quality and acceptable liveness, in
  ``k`` of the window's frames; at most once per approach and once per ``cooldown_s``.
  It is decided only on a frame where that person counts (so ``frame_ts`` is that frame):
  evidence that was blocked when it was complete never turns into a recognition later,
  on a frame without the person, because the block left the window or the cooldown ended;
- ``UnknownFace`` when ``k`` frames hold an unknown face and no known one: once per approach;
- ``SpoofSuspected`` (liveness ``required``) when ``k`` frames fail liveness or multi-frame
  consistency: once per approach, and nobody is recognised for the rest of that approach.
  It says ``after_grant`` when every failed face matched a person already recognised in
  the approach (one decision per person and approach: the gate refuses nobody for it).
  Before that, a face failing liveness in the window blocks the person it matched (anywhere
  in the frame) and every face near where it was seen (with no position known: every face).
  So a single rejected frame of a bystander does not lock out the resident beside them,
  while a photo that fails liveness even once cannot be moved elsewhere to pass;
- ``LowQuality`` when ``k`` frames hold only faces that failed the quality gate: once;
- a matched face strong enough on its own (:class:`SingleFrameRule`: score, margin to the
  runner-up, live probability, frame age) is ``Recognised`` on that frame without waiting for
  ``k`` frames; every other rule above (spoof blocks, cooldown, once per approach) still holds;
- two consecutive frames (no faceless frame between) in which the same face has the same
  best candidate, each within ``slack`` of the match threshold and with the margin, and whose
  mean score clears the threshold (:class:`PairRule`) are ``Recognised`` on the second, as
  ``k`` frames would be; a face that failed liveness ranking that person first blocks it;
- each unknown/spoof fusion (and each external failure, :meth:`ApproachTracker.record_failure`)
  is a failed attempt; after ``failed_face_attempts_before_fallback`` of them the tracker
  says ``OfferFallback`` once (prompt for PIN or card).

Liveness ``advisory`` counts failed-liveness frames but flags the recognition; ``off``
ignores liveness. Under ``required`` a frame counts only with ``live is True`` (no
anti-spoof model means no face grant: fail closed, PIN/card still work). Landmark-motion
consistency is never enough on its own: measured on YuNet's 5 landmarks it does not
separate a live head from a photo (see README, "Liveness").
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gateway.errors import ConfigError

from .decision import LivenessPolicy, is_fresh
from .pair_frames import PairRule, same_face
from .presented import FacePresented, FaceResult
from .single_frame import SingleFrameRule

__all__ = [
    "ApproachTracker",
    "FaceMatch",
    "FusionOutcome",
    "FusionSettings",
    "LowQuality",
    "OfferFallback",
    "PairRule",
    "Recognised",
    "SingleFrameRule",
    "SpoofSuspected",
    "UnknownFace",
    "as_presented",
    "is_fresh",
    "near",
]

LIVENESS_UNAVAILABLE = "liveness_unavailable"

#: A face box in frame pixels: (x, y, width, height).
Box = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class FaceMatch:
    """One face in one frame, as matched by the face pipeline.

    ``person_id`` None = no match; ``live`` is the passive liveness verdict (None: no
    model); ``consistent`` the multi-frame liveness consistency (None: not known yet).
    ``score``, ``margin`` (lead over the best other person, 1:N) and ``live_score`` (live
    probability) feed the single-frame rule; None means unknown (the face is then fused).
    ``candidate`` is the best-scoring person when ``person_id`` is None because the score or
    lead fell short (1:N; the pair rule may still use it), else None.
    """

    person_id: str | None
    quality_ok: bool = True
    live: bool | None = None
    consistent: bool | None = None
    low_quality_reason: str | None = None
    box: Box | None = None
    score: float | None = None
    margin: float | None = None
    live_score: float | None = None
    candidate: str | None = None


def near(a: Box | None, b: Box | None) -> bool:
    """Whether two face boxes could be the same face moving between frames.

    Each (x, y, w, h) box is grown by half its size on every side; they are near when the
    grown boxes overlap. An unknown position is near everything (the safe answer).
    """
    if a is None or b is None:
        return True
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return (
        ax - aw / 2 < bx + bw * 1.5
        and bx - bw / 2 < ax + aw * 1.5
        and ay - ah / 2 < by + bh * 1.5
        and by - bh / 2 < ay + ah * 1.5
    )


@dataclass(frozen=True, slots=True)
class FusionSettings:
    """Fusion tuning (see module docstring)."""

    k: int = 2
    n: int = 3
    max_decision_age_ms: float = 500.0
    cooldown_s: float = 10.0
    approach_gap_s: float = 2.0
    failed_face_attempts_before_fallback: int = 3
    liveness: LivenessPolicy = LivenessPolicy.REQUIRED
    single: SingleFrameRule = field(default_factory=SingleFrameRule)
    pair: PairRule = field(default_factory=PairRule)

    def __post_init__(self) -> None:
        problems: list[tuple[str, str, str]] = []
        if not 1 <= self.k <= self.n:
            problems.append(("face.fusion_k", str(self.k), f"must be 1..fusion_n ({self.n})"))
        if self.max_decision_age_ms <= 0:
            problems.append(("face.max_decision_age_ms", str(self.max_decision_age_ms), "> 0"))
        if self.cooldown_s < 0:
            problems.append(("face.cooldown_s", str(self.cooldown_s), "must be >= 0"))
        if self.approach_gap_s <= 0:
            problems.append(("face.approach_gap_s", str(self.approach_gap_s), "must be > 0"))
        if self.failed_face_attempts_before_fallback < 1:
            problems.append(
                (
                    "face.failed_attempts_before_fallback",
                    str(self.failed_face_attempts_before_fallback),
                    "must be >= 1",
                )
            )
        if problems:
            raise ConfigError(problems)


@dataclass(frozen=True, slots=True)
class Recognised:
    """``person_id`` matched in k of n frames (or on one strong frame: ``single_frame``, or
    on two consecutive frames by their mean score: ``pair_frames``); ``frame_ts`` is the
    newest contributing frame."""

    camera: str
    person_id: str
    frame_ts: float
    liveness_flagged: bool = False
    faces_in_approach: int = 1
    single_frame: bool = False
    pair_frames: bool = False

    @property
    def evidence_ts(self) -> float:
        """Same as ``frame_ts`` (for :func:`is_fresh`)."""
        return self.frame_ts


@dataclass(frozen=True, slots=True)
class UnknownFace:
    """An unknown face in k of n frames (one per approach)."""

    camera: str
    frame_ts: float


@dataclass(frozen=True, slots=True)
class SpoofSuspected:
    """Liveness failed in k of n frames under ``required`` (one per approach).

    ``after_grant``: every face that failed in those frames matched a person already
    recognised in this approach (the resident the door opened for, still in view): no new
    decision about anyone, so the gate refuses nobody and reports it as
    ``door.liveness_failed_after_grant``; the approach stays closed to other faces as after
    any spoof, but it is no failed attempt (no PIN prompt for the resident walking in)."""

    camera: str
    frame_ts: float
    after_grant: bool = False


@dataclass(frozen=True, slots=True)
class LowQuality:
    """Only low-quality faces in k of n frames (one per approach); ``reason`` for a prompt."""

    camera: str
    frame_ts: float
    reason: str | None


@dataclass(frozen=True, slots=True)
class OfferFallback:
    """Enough failed face attempts in this approach: prompt for PIN or card (once)."""

    camera: str
    frame_ts: float
    failures: int


FusionOutcome = Recognised | UnknownFace | SpoofSuspected | LowQuality | OfferFallback


def as_presented(outcome: FusionOutcome, *, claimed: str | None = None) -> FacePresented | None:
    """The ``FacePresented`` for the policy engine (None for ``OfferFallback``).

    With ``claimed`` (1:1 verification of a claimed person, the tracker fed with
    ``person_id=claimed`` on a verified frame and None otherwise) the result is a 1:1 one.
    """
    one_to_one = claimed is not None
    match outcome:
        case Recognised():
            return FacePresented(
                FaceResult.MATCH,
                outcome.frame_ts,
                outcome.person_id,
                one_to_one=one_to_one,
                liveness_flagged=outcome.liveness_flagged,
            )
        case UnknownFace():
            return FacePresented(FaceResult.NO_MATCH, outcome.frame_ts, claimed, one_to_one)
        case SpoofSuspected():
            return FacePresented(FaceResult.SPOOF, outcome.frame_ts, claimed, one_to_one)
        case LowQuality():
            return FacePresented(FaceResult.LOW_QUALITY, outcome.frame_ts, claimed, one_to_one)
        case OfferFallback():
            return None


@dataclass(slots=True)
class _Frame:
    ts: float
    matched: dict[str, bool]  # person -> liveness flagged (advisory)
    unknown: bool
    spoof: bool
    low_quality: bool
    low_quality_reason: str | None
    boxes: dict[str, list[Box | None]] = field(default_factory=dict)  # person -> boxes
    spoof_boxes: list[Box | None] = field(default_factory=list)
    spoof_people: set[str] = field(default_factory=set)  # whom the failed faces matched
    spoof_unmatched: bool = False  # a failed face matched nobody
    strong: set[str] = field(default_factory=set)  # people matched strongly enough alone
    # person -> (score, box, matched on its own) of each live, unflagged face ranking them
    # first within the pair rule's bars (matched or just below the threshold)
    scored: dict[str, list[tuple[float, Box | None, bool]]] = field(default_factory=dict)
    spoof_ranked: set[str] = field(default_factory=set)  # failed faces' best candidates
    follows: bool = False  # directly after the previous window frame (pair rule)


@dataclass(slots=True)
class _Approach:
    window: deque[_Frame]
    last_face_ts: float
    last_frame_ts: float
    max_faces: int = 0
    recognised: set[str] = field(default_factory=set)
    unknown_sent: bool = False
    spoof_sent: bool = False
    spoof_after_grant_only: bool = False  # the spoof reported so far was after_grant
    low_quality_sent: bool = False
    failures: int = 0
    fallback_sent: bool = False
    faceless_since_face: bool = False  # a frame without faces came after the last face


def _after_grant(window: Sequence[_Frame], st: _Approach) -> bool:
    """Whether every failed face of the window's spoof frames matched someone already
    recognised in this approach (one decision per person and approach)."""
    failed = [f for f in window if f.spoof]
    return bool(st.recognised) and all(
        f.spoof_people and f.spoof_people <= st.recognised and not f.spoof_unmatched for f in failed
    )


class ApproachTracker:
    """Per-camera fusion state (pure: frame timestamps are the clock)."""

    def __init__(
        self, settings: FusionSettings, liveness: Mapping[str, LivenessPolicy] | None = None
    ) -> None:
        self.settings = settings
        self._liveness = dict(liveness or {})
        self._approaches: dict[str, _Approach] = {}
        self._last_event: dict[str, float] = {}

    def fresh(self, outcome: Recognised, now: float) -> bool:
        """``is_fresh`` with the configured ``max_decision_age_ms``."""
        return is_fresh(outcome, now, self.settings.max_decision_age_ms)

    def liveness(self, camera: str) -> LivenessPolicy:
        """The liveness policy applied to ``camera``."""
        return self._liveness.get(camera, self.settings.liveness)

    def in_approach(self, camera: str, now: float) -> bool:
        """True while faces have been seen at ``camera`` within ``approach_gap_s``."""
        st = self._approaches.get(camera)
        return st is not None and now - st.last_face_ts < self.settings.approach_gap_s

    def faces_in_approach(self, camera: str) -> int:
        """Most people seen in the current approach (max faces per frame, people recognised)."""
        st = self._approaches.get(camera)
        return 0 if st is None else max(st.max_faces, len(st.recognised))

    def reset(self, camera: str) -> None:
        """Forget the current approach at ``camera``."""
        self._approaches.pop(camera, None)

    def expire(self, now: float) -> None:
        """End idle approaches and forget cooldowns that ran out (call on a timer)."""
        gap = self.settings.approach_gap_s
        for cam in [c for c, st in self._approaches.items() if now - st.last_face_ts >= gap]:
            del self._approaches[cam]
        cool = self.settings.cooldown_s
        for pid in [p for p, ts in self._last_event.items() if now - ts >= cool]:
            del self._last_event[pid]

    def record_failure(self, camera: str, frame_ts: float) -> list[FusionOutcome]:
        """Count a failed face attempt decided elsewhere (e.g. a 1:1 ``face_mismatch``)."""
        st = self._approaches.get(camera)
        if st is None:
            return []
        st.failures += 1
        return self._fallback(camera, st, frame_ts)

    def observe(
        self,
        camera: str,
        frame_ts: float,
        observations: Sequence[FaceMatch],
        now: float | None = None,
    ) -> list[FusionOutcome]:
        """Feed one frame's face matches (empty when no face); return new outcomes.

        ``now`` (same clock as ``frame_ts``) dates the decision: without it no frame is
        fresh enough for the single-frame rule and every face is fused.
        """
        s = self.settings
        st = self._approaches.get(camera)
        if st is not None:
            if frame_ts < st.last_frame_ts:
                return []  # out of order: never let an old frame count
            if frame_ts - st.last_face_ts >= s.approach_gap_s:
                del self._approaches[camera]
                st = None
        if not observations:
            if st is not None:
                st.last_frame_ts = frame_ts
                st.faceless_since_face = True
            return []
        if st is None:
            st = _Approach(deque(maxlen=s.n), frame_ts, frame_ts)
            self._approaches[camera] = st
        st.max_faces = max(st.max_faces, len(observations))
        policy = self.liveness(camera)
        age_ms = None if now is None else (now - frame_ts) * 1000.0
        if age_ms is not None and age_ms > s.max_decision_age_ms:
            age_ms = None  # too old to open a door at all
        prev = st.window[-1] if st.window else None
        frame = self._classify(frame_ts, observations, policy, s, age_ms)
        # no faceless frame between, and soon enough after it, for the pair rule
        frame.follows = (
            prev is not None
            and not st.faceless_since_face
            and s.pair.follows((frame_ts - prev.ts) * 1000.0)
        )
        st.faceless_since_face = False
        st.last_face_ts = st.last_frame_ts = frame_ts
        st.window.append(frame)

        out: list[FusionOutcome] = []
        window = list(st.window)
        required = policy is LivenessPolicy.REQUIRED
        if not (required and st.spoof_sent):
            spoofs = [b for f in window for b in f.spoof_boxes] if required else []
            spoofed = {p for f in window for p in f.spoof_people} if required else set()
            out.extend(self._recognise(camera, st, window, spoofs, spoofed))
        known_in_window = any(f.matched for f in window)
        if sum(f.spoof for f in window) >= s.k:
            after = _after_grant(window, st)
            if not after:  # the person the door opened for is not prompted for a PIN
                st.failures += 1
            st.window.clear()
            # Reported once; a real spoof after one that was about the granted person only
            # is reported too (nobody behind them probes with photos unseen).
            if not st.spoof_sent or (st.spoof_after_grant_only and not after):
                st.spoof_sent = True
                st.spoof_after_grant_only = after
                out.append(SpoofSuspected(camera, frame_ts, after))
        elif sum(f.unknown for f in window) >= s.k and not known_in_window:
            st.failures += 1
            st.window.clear()
            if not st.unknown_sent:
                st.unknown_sent = True
                out.append(UnknownFace(camera, frame_ts))
        elif not st.low_quality_sent and sum(f.low_quality for f in window) >= s.k:
            st.low_quality_sent = True
            reason = next(
                (f.low_quality_reason for f in reversed(window) if f.low_quality_reason), None
            )
            out.append(LowQuality(camera, frame_ts, reason))
        out.extend(self._fallback(camera, st, frame_ts))
        return out

    def _recognise(
        self,
        camera: str,
        st: _Approach,
        window: list[_Frame],
        spoofs: list[Box | None],
        spoofed: set[str],
    ) -> list[FusionOutcome]:
        s = self.settings
        out: list[FusionOutcome] = []
        # Decided only on a frame that holds the person: evidence blocked when it was
        # completed (spoof in the window, cooldown) must not become a recognition later,
        # on someone else's frame, just because the block left the window or ran out.
        last = window[-1]
        for pid in sorted(set(last.matched) | set(last.scored)):
            frames = [f for f in window if pid in f.matched]
            fused = pid in last.matched and len(frames) >= s.k
            single = not fused and pid in last.strong
            pair_boxes = [] if fused or single else _pair(window, pid, s.pair)
            if pair_boxes and len([f for f in window[:-2] if pid in f.matched]) + 2 < s.k:
                pair_boxes = []  # a pair counts as two of the k frames a door asks for
            if not (fused or single or pair_boxes) or pid in st.recognised:
                continue
            if pid in spoofed:
                continue  # a face matching this person failed liveness in the window
            # near-miss evidence: so is a failed face ranking them first (required: block;
            # advisory: flag)
            ranked_failed = bool(pair_boxes) and any(pid in f.spoof_ranked for f in window)
            if ranked_failed and self.liveness(camera) is LivenessPolicy.REQUIRED:
                continue
            boxes = [b for f in frames for b in f.boxes.get(pid, [None])] + pair_boxes
            if pair_boxes:
                frames = window[-2:]
            if any(near(b, sp) for b in boxes for sp in spoofs):
                continue  # a face that failed liveness was seen where this one is
            newest = max(f.ts for f in frames)
            previous = self._last_event.get(pid)
            if previous is not None and newest - previous < s.cooldown_s:
                continue
            st.recognised.add(pid)
            self._last_event[pid] = newest
            out.append(
                Recognised(
                    camera,
                    pid,
                    newest,
                    liveness_flagged=ranked_failed
                    or any(f.matched.get(pid, False) for f in frames),
                    faces_in_approach=max(st.max_faces, len(st.recognised)),
                    single_frame=single,
                    pair_frames=bool(pair_boxes),
                )
            )
        return out

    def _fallback(self, camera: str, st: _Approach, ts: float) -> list[FusionOutcome]:
        if st.fallback_sent or st.failures < self.settings.failed_face_attempts_before_fallback:
            return []
        st.fallback_sent = True
        return [OfferFallback(camera, ts, st.failures)]

    @staticmethod
    def _classify(
        ts: float,
        faces: Sequence[FaceMatch],
        policy: LivenessPolicy,
        s: FusionSettings,
        age_ms: float | None,
    ) -> _Frame:
        matched: dict[str, bool] = {}
        strong: set[str] = set()
        scored: dict[str, list[tuple[float, Box | None, bool]]] = {}
        boxes: dict[str, list[Box | None]] = {}
        spoof_boxes: list[Box | None] = []
        spoof_people: set[str] = set()
        spoof_ranked: set[str] = set()
        unknown = spoof = spoof_unmatched = False
        low: list[str | None] = []
        for face in faces:
            if not face.quality_ok:
                low.append(face.low_quality_reason)
                continue
            failed = face.live is False or face.consistent is False
            ranked = face.person_id or face.candidate  # whom the face ranks first
            flagged = False
            if policy is LivenessPolicy.REQUIRED:
                if failed:
                    spoof = True
                    spoof_boxes.append(face.box)
                    if face.person_id is not None:
                        spoof_people.add(face.person_id)
                    else:
                        spoof_unmatched = True
                    if ranked:
                        spoof_ranked.add(ranked)
                    continue
                if face.live is None:
                    low.append(LIVENESS_UNAVAILABLE)
                    continue
            elif policy is LivenessPolicy.ADVISORY:
                flagged = failed
                if failed and ranked:
                    spoof_ranked.add(ranked)
            score = face.score
            pairable = not flagged and s.pair.candidate(score, face.margin)
            if ranked and score is not None and pairable:
                own = face.person_id is not None
                scored.setdefault(ranked, []).append((score, face.box, own))
            if face.person_id is None:
                unknown = True
            else:
                matched[face.person_id] = matched.get(face.person_id, False) or flagged
                boxes.setdefault(face.person_id, []).append(face.box)
                if not flagged and s.single.strong(
                    score=face.score,
                    margin=face.margin,
                    live_score=face.live_score,
                    policy=policy,
                    age_ms=age_ms,
                ):
                    strong.add(face.person_id)
        usable = bool(matched) or unknown or spoof
        return _Frame(
            ts=ts,
            matched=matched,
            unknown=unknown,
            spoof=spoof,
            low_quality=bool(low) and not usable,
            low_quality_reason=next((r for r in low if r), None),
            boxes=boxes,
            spoof_boxes=spoof_boxes,
            spoof_people=spoof_people,
            spoof_unmatched=spoof_unmatched,
            strong=strong,
            scored=scored,
            spoof_ranked=spoof_ranked,
        )


def _pair(window: Sequence[_Frame], pid: str, rule: PairRule) -> list[Box | None]:
    """The boxes of one face of ``pid`` in the window's last two frames, consecutive, whose
    scores decide together under ``rule`` (empty: none)."""
    if len(window) < 2 or not window[-1].follows:
        return []
    for first, box1, own1 in window[-2].scored.get(pid, []):
        for second, box2, own2 in window[-1].scored.get(pid, []):
            # one of the two matched on its own (true whenever the rule's bars are the face
            # path's; checked, not assumed)
            if (own1 or own2) and same_face(box1, box2) and rule.fires(first, second):
                return [box1, box2]
    return []
