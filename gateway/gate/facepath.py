"""The face path of one camera: capture -> no-capture mask -> pipeline -> match -> fusion.

Frames stay in memory: the capture thread's one-slot mailbox hands the newest frame to the
inference worker, the zones are blanked in that buffer before any model sees it, and the
buffer is dropped as soon as the observations are out. A camera that goes away, or a face
model that fails, disables the face path with an event; PIN and card never depend on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import InitVar, dataclass, field
from typing import Any, Protocol

import numpy as np

from gateway import access
from gateway.access import ApproachTracker, FaceMatch, FaceMode, PolicyEngine
from gateway.access.liveness_fusion import fused_live
from gateway.face.gallery import Gallery
from gateway.face.liveness import ConsistencyTracker
from gateway.face.motion import MotionGate
from gateway.face.pair_reuse import VerdictReuse
from gateway.face.pair_verdict import TOO_FAR
from gateway.face.pipeline import Box, FaceObservation, FacePipeline
from gateway.face.settings import MatchSettings
from gateway.face.stereo_pair import frames_match, split_side_by_side
from gateway.face.worker import FaceWorker
from gateway.gate.camera import CameraCapture, CapturedFrame
from gateway.privacy.zones import ZoneMasker

log = logging.getLogger(__name__)

OutcomeSink = Callable[[str, access.FusionOutcome], Awaitable[None]]

#: a face accepted by the quality gate this recently (monotonic seconds) is "tracked": the
#: next frame judges its size with the gate's hysteresis
TRACK_S = 0.5


@dataclass
class FrameTiming:
    """Per-stage milliseconds of the last processed frame (for the loop benchmark)."""

    capture_to_start_ms: float = 0.0
    analyze_ms: float = 0.0
    match_ms: float = 0.0
    faces: int = 0
    stereo_ms: float = 0.0


class PairVerdict(Protocol):
    """A pair check's verdict on one face: live (None: no verdict), why, its cost."""

    @property
    def live(self) -> bool | None: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def ms(self) -> float: ...


class PairCheck(Protocol):
    """The check of a door's camera pair: the 3-D (stereo) or the NIR (rgb+nir) check."""

    def check(
        self,
        first: np.ndarray,
        second: np.ndarray,
        box: tuple[float, float, float, float],
        five: np.ndarray,
    ) -> PairVerdict: ...


@dataclass(kw_only=True, eq=False)
class FacePath:
    """One camera's face processing, run as a supervised service."""

    camera: str
    door: str
    reader: str | None
    capture: CameraCapture
    pipeline: FacePipeline
    gallery: Gallery
    transform: Callable[[np.ndarray], np.ndarray]
    masker: ZoneMasker
    engine: PolicyEngine
    tracker: ApproachTracker
    settings: MatchSettings
    sink: OutcomeSink
    liveness_enabled: bool = True
    consistency_k: InitVar[int] = 5
    motion_veto: bool = False
    #: skips detection on an idle camera's unchanged frames (None: every frame is analysed)
    motion_gate: MotionGate | None = field(default_factory=MotionGate)
    on_faces: Callable[[str, int], None] | None = None
    #: the door's camera pair: its check (3-D for stereo, NIR for rgb+nir), and the second
    #: view's capture (None: the frames are side by side); a pair whose camera is down
    #: stops the face path
    stereo: PairCheck | None = None
    second: CameraCapture | None = None
    second_masker: ZoneMasker | None = None
    #: the pair check's verdict stands in for the next frames of the same face (None: every
    #: frame is measured)
    reuse: VerdictReuse | None = field(default_factory=VerdictReuse)
    fps: float = 10.0
    consistency: ConsistencyTracker = field(init=False)
    worker: FaceWorker[list[FaceObservation]] = field(init=False)
    timing: FrameTiming = field(init=False, default_factory=FrameTiming)
    frames: int = field(init=False, default=0)
    failures: int = field(init=False, default=0)
    enrolment: asyncio.Queue[list[FaceObservation]] | None = field(init=False, default=None)
    #: (monotonic time, boxes) of the faces the quality gate accepted in the last frame
    _accepted: tuple[float, tuple[Box, ...]] = field(init=False, default=(0.0, ()))
    _stereo_ms: float = field(init=False, default=0.0)

    def __post_init__(self, consistency_k: int) -> None:
        """The consistency track and the worker thread (not started)."""
        self.consistency = ConsistencyTracker(k=consistency_k)
        self.worker = FaceWorker(self._analyze, name=self.camera)

    def _analyze(self, frame: np.ndarray) -> list[FaceObservation]:
        if self.stereo is None:
            return self._analyze_view(frame)
        # A pair: the frame holds both views side by side (as captured, or joined in _process).
        first, second = split_side_by_side(frame)
        # the second camera's own zones; side by side, the same zones as the first view
        (self.second_masker or self.masker).apply(second)
        observations = self._analyze_view(first)
        return self._with_relief(observations, first, second)

    def _with_relief(
        self, observations: list[FaceObservation], first: np.ndarray, second: np.ndarray
    ) -> list[FaceObservation]:
        """The pair's check on the largest good face (the one a decision is about)."""
        assert self.stereo is not None  # noqa: S101 - only called with a pair
        good = [o for o in observations if o.quality.ok]
        self._stereo_ms = 0.0
        if not good:
            return observations
        target = max(good, key=lambda o: o.box[2] * o.box[3])
        box, now = target.box, time.monotonic()
        live = None if self.reuse is None else self.reuse.lookup(box, target.embedding, now)
        too_far = False
        if live is None:
            verdict = self.stereo.check(first, second, target.box, target.landmarks)
            self._stereo_ms = verdict.ms
            live = verdict.live
            if self.reuse is not None:
                self.reuse.store(box, target.embedding, live, now)
            if not live:
                said = "no verdict" if live is None else "not live"
                log.debug("camera %s: pair check: %s (%s)", self.camera, said, verdict.reason)
            # Too far for this door's pair check: not an attempt yet, as a face below the
            # quality gate's size (no "low quality" refusal while someone walks up); every
            # other good face is smaller, so too far as well.
            too_far = verdict.reason == TOO_FAR
        out: list[FaceObservation] = []
        for o in observations:
            seen = dataclasses.replace(o, relief=live) if o is target else o
            if too_far and seen.quality.ok:
                small = dataclasses.replace(seen.quality, ok=False, reason="too_small")
                seen = dataclasses.replace(seen, quality=small)
            out.append(seen)
        return out

    def _analyze_view(self, frame: np.ndarray) -> list[FaceObservation]:
        # The mask is applied in place, in this buffer, before any model runs.
        self.masker.apply(frame)
        # At-gate enrolment always measures liveness, whatever the door's policy.
        live = self.liveness_enabled or self.enrolment is not None
        seen, boxes = self._accepted
        now = time.monotonic()
        # Enrolment samples always meet the strict gate.
        tracked = boxes if self.enrolment is None and now - seen <= TRACK_S else ()
        gate = self.motion_gate
        if gate is not None and self.enrolment is not None:
            gate.reset()  # enrolment looks at every frame
        if gate is not None and not gate.needs_analysis(frame, now):
            return []  # nothing new since an analysed frame that held no face
        observations = self.pipeline.analyze(frame, liveness=live, tracked=tracked)
        if gate is not None:
            gate.analysed(frame, len(observations), now)
        self._accepted = (now, tuple(o.box for o in observations if o.quality.ok))
        return observations

    def _match(
        self, observations: Sequence[FaceObservation], claimed: str | None, now: float
    ) -> list[FaceMatch]:
        matches: list[FaceMatch] = []
        largest = max(observations, key=lambda o: o.box[2] * o.box[3], default=None)
        if largest is None:
            self.consistency.reset()
        for obs in observations:
            consistent: bool | None = None
            if obs is largest and self.motion_veto:
                verdict = self.consistency.update(obs.landmarks, obs.box, now)
                consistent = {"live": True, "rigid": False, "static": False}.get(verdict.state)
            passive = (
                None if obs.liveness is None else obs.liveness >= self.settings.liveness_threshold
            )
            live = fused_live(passive, obs.relief, has_pair=self.stereo is not None)
            x, y, w, h = obs.box
            box = (float(x), float(y), float(w), float(h))
            if obs.embedding is None or not obs.quality.ok:
                matches.append(
                    FaceMatch(
                        None,
                        quality_ok=False,
                        live=live,
                        consistent=consistent,
                        low_quality_reason=obs.quality.reason,
                        box=box,
                    )
                )
                continue
            probe = self.transform(obs.embedding.reshape(1, -1))[0]
            # 1:1 leaves them unknown: no single-frame or two-frame decision
            score = lead = candidate = None
            if claimed is not None:
                limit = self.settings.verify_threshold
                ok = self.gallery.verify(probe, claimed, limit)
                person = claimed if ok else None
            else:
                person, score, lead, ranked = self.gallery.identify_ranked(
                    probe, self.settings.threshold, self.settings.margin
                )
                candidate = ranked if person is None else None
            matches.append(
                FaceMatch(
                    person,
                    quality_ok=True,
                    live=live,
                    consistent=consistent,
                    box=box,
                    score=score,
                    margin=lead,
                    live_score=obs.liveness,
                    candidate=candidate,
                )
            )
        return matches

    async def enrol_frames(self, limit_s: float) -> AsyncIterator[list[FaceObservation]]:
        """Hand the next analysed frames to an at-gate enrolment (instead of matching)."""
        queue: asyncio.Queue[list[FaceObservation]] = asyncio.Queue(maxsize=4)
        self.enrolment = queue
        deadline = time.monotonic() + limit_s
        try:
            while (left := deadline - time.monotonic()) > 0:
                try:
                    async with asyncio.timeout(left):
                        item = await queue.get()
                except TimeoutError:
                    return
                yield item
        finally:
            self.enrolment = None
            self.tracker.reset(self.camera)

    async def run(self) -> None:
        """Process frames until cancelled."""
        self.capture.start()
        if self.second is not None:
            self.second.start()
        self.worker.start()
        try:
            while True:
                frame: CapturedFrame | None = await asyncio.to_thread(
                    self.capture.mailbox.take, 0.5
                )
                now = time.time()
                if frame is None:
                    for outcome in self.tracker.observe(self.camera, now, []):
                        await self.sink(self.camera, outcome)
                    continue
                await self._process(frame, now)
        finally:
            self.worker.stop()
            self.capture.stop()
            if self.second is not None:
                self.second.stop()

    def _joined(self, frame: CapturedFrame) -> np.ndarray | None:
        """The frame with the second view beside it; None when the pair cannot be used."""
        if self.second is None:
            return frame.image
        if not self.second.online:
            return None  # fail closed: the face path waits for both cameras
        other = self.second.mailbox.take(1.0 / self.fps)
        if other is None or not frames_match(frame.ts, other.ts, self.fps):
            # more than one frame apart: no 3-D verdict, so no face decision from this frame
            blank = np.zeros_like(frame.image)
            return np.hstack([frame.image, blank])
        if other.image.shape != frame.image.shape:
            return None
        return np.hstack([frame.image, other.image])

    def _mode_and_claim(self) -> tuple[FaceMode, str | None]:
        """The door's face mode now, and the person a pending card/PIN claims (1:1)."""
        mode = self.engine.face_mode(self.door)
        if mode is FaceMode.NONE or self.reader is None:
            return mode, None
        pending = self.engine.pending_for(self.door, self.reader, time.time())
        return mode, None if pending is None else pending.person_id

    async def _process(self, frame: CapturedFrame, now: float) -> None:
        # Capture time on the wall clock, so that freshness is judged on one clock.
        frame_ts = now - (time.monotonic() - frame.ts)
        # Decided once per frame, before any model runs (a claim made during the analysis
        # is taken up by the next frame).
        mode, claimed = self._mode_and_claim()
        idle = mode is FaceMode.NONE or (mode is FaceMode.VERIFY_ONLY and claimed is None)
        if idle and self.enrolment is None:
            # Data minimisation: no face is even detected when nothing could use it (face
            # off by schedule, or a verify-only door with no card/PIN claim pending).
            return
        start = time.perf_counter()
        image = await asyncio.to_thread(self._joined, frame) if self.second else frame.image
        del frame  # the buffer is not kept after use
        if image is None:
            return
        result = await self.worker.process(image)
        del image
        if result is None:
            return
        analyzed = time.perf_counter()
        if result.error is not None or result.value is None:
            self.failures += 1
            if self.failures == 1 or self.failures % 100 == 0:
                log.warning(
                    "camera %s: face analysis failed (%s); %d failure(s) so far",
                    self.camera,
                    type(result.error).__name__,
                    self.failures,
                )
            return
        observations = result.value
        if self.enrolment is not None:
            # At-gate enrolment in progress: frames feed the enrolment, not the door.
            with contextlib.suppress(asyncio.QueueFull):
                self.enrolment.put_nowait(observations)
            return
        if idle:
            return  # the frame was analysed for an enrolment that has just ended
        if observations:
            matches = await asyncio.to_thread(self._match, observations, claimed, frame_ts)
        else:  # nothing to match (an empty scene): no thread hop
            matches = self._match(observations, claimed, frame_ts)
        self.timing = FrameTiming(
            capture_to_start_ms=0.0,
            analyze_ms=(analyzed - start) * 1000,
            match_ms=(time.perf_counter() - analyzed) * 1000,
            faces=len(observations),
            stereo_ms=self._stereo_ms,
        )
        self.frames += 1
        if self.on_faces is not None and observations:
            self.on_faces(self.camera, len(observations))
        for outcome in self.tracker.observe(self.camera, frame_ts, matches, now=time.time()):
            await self.sink(self.camera, outcome)


def describe_observations(observations: Sequence[Any]) -> str:
    """A log-safe summary (counts and verdicts only, never pixels or embeddings)."""
    ok = sum(1 for o in observations if getattr(o.quality, "ok", False))
    return f"{len(observations)} face(s), {ok} of good quality"
