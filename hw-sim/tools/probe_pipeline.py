"""Probe: feed simulator scenes through the gateway's real face pipeline, print statistics.

Dev tool (imports ``gateway``; not part of ``hw_sim``). For each variant, one person walks
up; every frame is rendered directly with :class:`hw_sim.scenes.Scene` at the camera's fps,
JPEG round-tripped like the MJPEG stream, masked by the no-capture zones (as the daemon
does), then analysed by ``FacePipeline`` and tracked by ``ConsistencyTracker`` (defaults).

    /tmp/venv/bin/python -m gateway models install --model-dir /tmp/sr-models \
        --antispoof ../shared/models/antispoof
    /tmp/venv/bin/python hw-sim/tools/probe_pipeline.py --model-dir /tmp/sr-models

Columns: ``det`` share of frames with a detection of the subject; ``q_ok`` share of
detections passing the quality gate; ``cos`` cosine to the best enrolment template
(median / 10th percentile, ``>=thr`` share of embedded frames at or above the match
threshold); ``live`` MiniFASNet live probability (median / share >= 0.5); consistency
verdict counts over non-pending frames and the median ``motion`` / ``nonrigid`` measures;
``truth_verdicts`` the same tracker fed the renderer's exact landmarks (``Scene.landmarks``);
``flow_res`` a dense cue for comparison (LK-tracked face corners 0.4 s apart, homography-fit
residual / eye distance); ``px`` a 3-D cue: the spread over 1 s of the nose's affine
coordinates in the eyes/mouth frame (0 for anything flat; ``px_truth`` from the renderer's
exact landmarks, ``px`` from the detector's); ``grant@fas`` / ``grant@cons`` per
approach: the first frame at which 2 of the last 3 frames are matched AND live by
MiniFASNet / by the consistency check alone (what the daemon's fusion does without an
anti-spoof model), None = never;
``spoof@fas`` / ``spoof@cons`` likewise for 2 of 3 matched frames judged NOT live (the
fusion's SpoofSuspected, which blocks the rest of the approach when it comes first).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gateway.face.liveness import ConsistencyTracker
from gateway.face.pipeline import FaceObservation, FacePipeline
from gateway.face.settings import FaceSettings
from gateway.privacy.zones import apply_zones
from hw_sim import scenes
from hw_sim.corpus import FaceCorpus
from hw_sim.scenes import Actor, Polygon, Scene

DEFAULT_ZONE: Polygon = [(0.72, 0.12), (0.95, 0.12), (0.95, 0.42), (0.72, 0.42)]


@dataclass
class VariantStats:
    """What the pipeline made of one variant's approach."""

    variant: str
    frames: int = 0
    detected: int = 0
    quality_ok: int = 0
    cosines: list[float] = field(default_factory=list)
    liveness: list[float] = field(default_factory=list)
    verdicts: Counter[str] = field(default_factory=Counter)
    truth_verdicts: Counter[str] = field(default_factory=Counter)
    motion: list[float] = field(default_factory=list)
    nonrigid: list[float] = field(default_factory=list)
    inside_zone: int = 0
    flow_residual: list[float] = field(default_factory=list)
    # nose parallax over a 1 s window: detected landmarks / the renderer's exact ones
    parallax: list[float] = field(default_factory=list)
    truth_parallax: list[float] = field(default_factory=list)
    # per frame with a face: (matched at the threshold, MiniFASNet live, consistency live)
    frame_flags: list[tuple[bool, bool | None, bool | None]] = field(default_factory=list)
    render_ms: list[float] = field(default_factory=list)

    def first_grant(self, k: int, n: int, signal: int, *, live: bool = True) -> int | None:
        """Index of the first frame where ``k`` of the last ``n`` frames are matched AND live
        (``live=False``: matched and judged NOT live, i.e. a spoof suspicion).

        ``signal`` 1 = MiniFASNet says live, 2 = the consistency check says live (what the
        daemon's fusion uses under liveness ``required`` without an anti-spoof model).
        """
        ok = [f[0] and f[signal] is live for f in self.frame_flags]
        for i in range(len(ok)):
            if sum(ok[max(0, i - n + 1) : i + 1]) >= k:
                return i
        return None

    def summary(self, threshold: float) -> dict[str, Any]:
        """Plain numbers for printing / JSON."""

        def q(xs: list[float], p: float) -> float | None:
            return round(float(np.percentile(xs, p)), 3) if xs else None

        n_cos = len(self.cosines)
        n_live = len(self.liveness)
        return {
            "variant": self.variant,
            "frames": self.frames,
            "det_rate": round(self.detected / max(1, self.frames), 3),
            "quality_ok": round(self.quality_ok / max(1, self.detected), 3),
            "cos_med": q(self.cosines, 50),
            "cos_p10": q(self.cosines, 10),
            "cos_ge_thr": round(sum(c >= threshold for c in self.cosines) / n_cos, 3)
            if n_cos
            else None,
            "live_med": q(self.liveness, 50),
            "live_p10": q(self.liveness, 10),
            "live_p90": q(self.liveness, 90),
            "live_ge_0.5": round(sum(p >= 0.5 for p in self.liveness) / n_live, 3)
            if n_live
            else None,
            "verdicts": dict(self.verdicts),
            "truth_verdicts": dict(self.truth_verdicts),
            "motion_med": q(self.motion, 50),
            "nonrigid_med": q(self.nonrigid, 50),
            "ratio_med": round(float(np.median(np.array(self.nonrigid) / np.array(self.motion))), 3)
            if self.motion
            else None,
            "inside_zone": self.inside_zone,
            "flow_res_med": q(self.flow_residual, 50),
            "flow_res_p90": q(self.flow_residual, 90),
            "render_ms_med": q(self.render_ms, 50),
            "px_med": q(self.parallax, 50),
            "px_p90": q(self.parallax, 90),
            "px_truth_med": q(self.truth_parallax, 50),
            "grant@fas": self.first_grant(2, 3, 1),
            "grant@cons": self.first_grant(2, 3, 2),
            "spoof@fas": self.first_grant(2, 3, 1, live=False),
            "spoof@cons": self.first_grant(2, 3, 2, live=False),
        }


def _subject(obs: list[FaceObservation]) -> FaceObservation | None:
    """The largest face (the person walking up)."""
    return max(obs, key=lambda o: o.box[2] * o.box[3]) if obs else None


def nose_coords(landmarks: np.ndarray) -> np.ndarray:
    """The nose in the affine frame of the eyes and the mouth centre (2 numbers).

    Affine-invariant: constant for a flat photo or screen however it is moved (up to
    perspective), changing with head rotation for a 3-D face (the nose stands off the
    eye/mouth plane).
    """
    er, el, nose, mr, ml = np.asarray(landmarks, np.float64).reshape(5, 2)
    basis = np.column_stack([el - er, (mr + ml) / 2 - er])
    return np.asarray(np.linalg.lstsq(basis, nose - er, rcond=None)[0])


def spread(window: deque[np.ndarray]) -> float:
    """Root of the summed variance of the nose coordinates over the window."""
    return float(np.sqrt(np.var(np.stack(list(window)), axis=0).sum()))


def plane_residual(a: np.ndarray, b: np.ndarray, obs: FaceObservation) -> float | None:
    """Dense rigidity cue: corners on the face tracked from ``a`` to ``b`` (LK, checked
    forward-backward), least-squares homography fit; RMS residual / eye distance.

    A flat photo/screen moves by one homography (perspective included); a 3-D head does not.
    """
    ga, gb = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY), cv2.cvtColor(b, cv2.COLOR_BGR2GRAY)
    lm = np.asarray(obs.landmarks, np.float64)
    iod = float(np.hypot(*(lm[1] - lm[0])))
    c = lm.mean(axis=0)
    mask = np.zeros_like(ga)
    axes = (int(iod * 0.9), int(iod * 1.0))
    cv2.ellipse(mask, (int(c[0]), int(c[1])), axes, 0, 0, 360, 255, -1)
    pts = cv2.goodFeaturesToTrack(ga, 80, 0.01, 4, mask=mask)
    if pts is None or len(pts) < 12:
        return None
    nxt, st, _ = cv2.calcOpticalFlowPyrLK(ga, gb, pts, pts.copy(), winSize=(15, 15))
    back, st2, _ = cv2.calcOpticalFlowPyrLK(gb, ga, nxt, nxt.copy(), winSize=(15, 15))
    good = (st.ravel() == 1) & (st2.ravel() == 1)
    good &= np.linalg.norm((back - pts).reshape(-1, 2), axis=1) < 0.5
    p0, p1 = pts.reshape(-1, 2)[good], nxt.reshape(-1, 2)[good]
    if len(p0) < 12:
        return None
    hom, _ = cv2.findHomography(p0, p1, 0)
    if hom is None:
        return None
    proj = cv2.perspectiveTransform(p0.reshape(-1, 1, 2), hom).reshape(-1, 2)
    return float(np.sqrt(((proj - p1) ** 2).sum(axis=1).mean())) / iod


def enrol(pipe: FacePipeline, corpus: FaceCorpus, name: str, k: int) -> np.ndarray:
    """Enrolment templates of ``name`` (the corpus's first images), through the pipeline."""
    temps = []
    for img in corpus.enrolment_images(name, k):
        sample = pipe.embed_image(img)
        if sample.ok and sample.embedding is not None:
            temps.append(sample.embedding)
    if not temps:
        raise SystemExit(f"no usable enrolment image for {name}")
    return np.stack(temps)


def probe_variant(
    pipe: FacePipeline,
    corpus: FaceCorpus,
    name: str,
    variant: str,
    templates: np.ndarray,
    *,
    width: int = 640,
    height: int = 480,
    fps: float = 15.0,
    approach_s: float = 3.0,
    linger_s: float = 3.0,
    jpeg_quality: int = 80,
    zones: list[Polygon] | None = None,
    seed: int = 0,
    tracker_kwargs: dict[str, Any] | None = None,
    flow_lag_s: float = 0.4,
    threshold: float = 0.40,
) -> VariantStats:
    """Render one approach of ``variant`` and run every frame through the pipeline."""
    zones = [DEFAULT_ZONE] if zones is None else zones
    scene = Scene(width, height, corpus, zones=zones)
    actor = Actor(
        name,
        corpus.probe_index(name),
        variant,
        start=0.0,
        approach_s=approach_s,
        linger_s=linger_s,
        seed=seed,
    )
    scene.add(actor)
    tracker = ConsistencyTracker(**(tracker_kwargs or {}))
    truth_tracker = ConsistencyTracker(**(tracker_kwargs or {}))
    stats = VariantStats(variant)
    zone_px = [np.array([[x * width, y * height] for x, y in z], np.float32) for z in zones]
    n = int((approach_s + linger_s) * fps)
    lag = max(1, round(flow_lag_s * fps))
    history: deque[tuple[np.ndarray, FaceObservation] | None] = deque(maxlen=lag + 1)
    px_window = max(2, round(fps))
    px_det: deque[np.ndarray] = deque(maxlen=px_window)
    px_truth: deque[np.ndarray] = deque(maxlen=px_window)
    for i in range(n):
        t = i / fps
        r0 = time.perf_counter()
        frame = scene.render(t)
        stats.render_ms.append((time.perf_counter() - r0) * 1e3)
        ok, buf = cv2.imencode(".jpg", frame, [int(cv2.IMWRITE_JPEG_QUALITY), jpeg_quality])
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
        if decoded is None:
            raise SystemExit(f"JPEG round trip failed at t={t:.2f}s")
        frame = np.asarray(decoded, np.uint8)
        if variant == "in_zone":  # where is the face, before the daemon blanks it?
            raw = _subject(pipe.analyze(frame, liveness=False))
            if raw is not None:
                x, y, w, h = raw.box
                corners = [(x, y), (x + w, y), (x, y + h), (x + w, y + h)]
                if any(
                    all(cv2.pointPolygonTest(zp, c, False) >= 0 for c in corners) for zp in zone_px
                ):
                    stats.inside_zone += 1
        frame = apply_zones(frame, zones)
        stats.frames += 1
        o = _subject(pipe.analyze(frame))
        history.append(None if o is None else (frame, o))
        if o is None:
            px_det.clear()
            px_truth.clear()
            continue
        prev = history[-1 - lag] if len(history) > lag else None
        if o.quality.ok and prev is not None:
            r = plane_residual(prev[0], frame, prev[1])
            if r is not None:
                stats.flow_residual.append(r)
        stats.detected += 1
        truth = scene.landmarks(actor, t)  # what the renderer drew: perfect landmarks
        tv = truth_tracker.update(truth, o.box, t)
        px_det.append(nose_coords(o.landmarks))
        px_truth.append(nose_coords(truth))
        if len(px_det) == px_window:
            stats.parallax.append(spread(px_det))
            stats.truth_parallax.append(spread(px_truth))
        if tv.state != "pending":
            stats.truth_verdicts[tv.state] += 1
        v = tracker.update(o.landmarks, o.box, t)
        if v.state != "pending":
            stats.verdicts[v.state] += 1
            stats.motion.append(v.motion)
            stats.nonrigid.append(v.nonrigid)
        if o.quality.ok:
            stats.quality_ok += 1
        if o.embedding is not None:
            stats.cosines.append(float((templates @ o.embedding).max()))
        if o.liveness is not None:
            stats.liveness.append(o.liveness)
        matched = o.embedding is not None and float((templates @ o.embedding).max()) >= threshold
        fas = None if o.liveness is None else o.liveness >= 0.5
        cons = {"live": True, "rigid": False, "static": False}.get(v.state)
        stats.frame_flags.append((matched, fas, cons))
    return stats


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width table of the summaries."""
    cols = [
        ("variant", 9),
        ("frames", 6),
        ("det_rate", 8),
        ("quality_ok", 10),
        ("cos_med", 7),
        ("cos_p10", 7),
        ("cos_ge_thr", 10),
        ("live_med", 8),
        ("live_p10", 8),
        ("live_p90", 8),
        ("live_ge_0.5", 11),
        ("motion_med", 10),
        ("nonrigid_med", 12),
        ("ratio_med", 9),
        ("inside_zone", 11),
        ("flow_res_med", 12),
        ("flow_res_p90", 12),
        ("render_ms_med", 13),
        ("px_med", 7),
        ("px_p90", 7),
        ("px_truth_med", 12),
        ("grant@fas", 9),
        ("grant@cons", 10),
        ("spoof@fas", 9),
        ("spoof@cons", 10),
        ("verdicts", 44),
        ("truth_verdicts", 0),
    ]
    lines = [" ".join(c.ljust(w) for c, w in cols)]
    for r in rows:
        lines.append(" ".join(str(r[c]).ljust(w) for c, w in cols))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument(
        "--model-dir",
        type=Path,
        default=Path(os.environ.get("GATEWAY_MODEL_DIR", "/var/lib/access-gateway/models")),
        help="installed models (gateway models install --model-dir DIR --antispoof DIR)",
    )
    ap.add_argument("--faces", type=Path, default=None, help="LFW-layout corpus (default: auto)")
    ap.add_argument("--person", default="resident1")
    ap.add_argument(
        "--variants", default="live,photo,replay,in_zone", help="comma-separated variant names"
    )
    ap.add_argument("--fps", type=float, default=15.0)
    ap.add_argument("--approach-s", type=float, default=3.0)
    ap.add_argument("--linger-s", type=float, default=3.0)
    ap.add_argument("--seeds", type=int, default=1, help="approaches per variant")
    ap.add_argument("--threshold", type=float, default=0.40, help="match threshold")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--consistency-k", type=int, default=5, help="ConsistencyTracker k (daemon default: 3)"
    )
    ap.add_argument(
        "--head-deg",
        default=None,
        help="override the live head's yaw,pitch,roll amplitudes in degrees, e.g. 15,8,3",
    )
    args = ap.parse_args(argv)

    if args.head_deg:
        scenes.YAW_DEG, scenes.PITCH_DEG, scenes.ROLL_DEG = map(float, args.head_deg.split(","))
    corpus = FaceCorpus(args.faces)
    name = corpus.resolve(args.person)
    pipe = FacePipeline.load(args.model_dir, FaceSettings())
    templates = enrol(pipe, corpus, name, 3)
    print(
        f"corpus={corpus.source} person={name} probe_image={corpus.probe_index(name)} "
        f"templates={len(templates)} liveness_model={pipe.has_liveness} "
        f"head_deg={scenes.YAW_DEG},{scenes.PITCH_DEG},{scenes.ROLL_DEG}",
        file=sys.stderr,
    )
    rows = []
    for variant in args.variants.split(","):
        merged: VariantStats | None = None
        grants: list[list[int | None]] = [[], [], [], []]
        for seed in range(args.seeds):
            s = probe_variant(
                pipe,
                corpus,
                name,
                variant,
                templates,
                fps=args.fps,
                approach_s=args.approach_s,
                linger_s=args.linger_s,
                seed=seed,
                threshold=args.threshold,
                tracker_kwargs={"k": args.consistency_k},
            )
            for j, (sig, live) in enumerate(((1, True), (2, True), (1, False), (2, False))):
                grants[j].append(s.first_grant(2, 3, sig, live=live))
            if merged is None:
                merged = s
            else:
                for f in ("frames", "detected", "quality_ok", "inside_zone"):
                    setattr(merged, f, getattr(merged, f) + getattr(s, f))
                for f in (
                    "cosines",
                    "liveness",
                    "motion",
                    "nonrigid",
                    "render_ms",
                    "flow_residual",
                ):
                    getattr(merged, f).extend(getattr(s, f))
                merged.verdicts.update(s.verdicts)
                merged.truth_verdicts.update(s.truth_verdicts)
        if merged is None:
            return 2  # --seeds 0
        row = merged.summary(args.threshold)
        # per approach (seed)
        row["grant@fas"], row["grant@cons"], row["spoof@fas"], row["spoof@cons"] = grants
        rows.append(row)
        print(format_table(rows[-1:]).splitlines()[-1], file=sys.stderr)
    print(format_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
