#!/usr/bin/env python3
"""Landmark-motion consistency measured with dense landmarks (issue #19, 2c).

    python hw-sim/tools/probe_dense_motion.py MODEL_DIR [--people 3] [--json OUT]

For simulated approaches (live, photo, replay, tablet, curved) at 10 fps, the gateway's
pipeline finds the face (YuNet: box + 5 landmarks, as at the gate), MediaPipe's face mesh
gives its 468 landmarks, and between consecutive frames this measures, in eye distances:
the motion (RMS displacement) and the residual of the best affine map (a flat photo or a
screen moved by hand moves by one affine map: residual ~ landmark noise). Reported per
variant: the median residual/motion ratio and residual, and the share of frame pairs that
a ratio threshold would call non-rigid (live). MODEL_DIR holds YuNet/SFace and
face_landmark.tflite (e.g. ~/.cache/access-gateway/bench-stereo-models).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "hw-sim"))

VARIANTS = ("live", "photo", "replay", "tablet", "curved")
THRESHOLDS = (0.05, 0.08, 0.12, 0.2)


def _residual(a: np.ndarray, b: np.ndarray) -> float:
    src = np.hstack([a, np.ones((len(a), 1))])
    sol, *_ = np.linalg.lstsq(src, b, rcond=None)
    return float(np.sqrt(((src @ sol - b) ** 2).sum(axis=1).mean()))


def _pairs(pipe: Any, marker: Any, corpus: Any, name: str, variant: str) -> list[dict[str, float]]:
    from hw_sim.scenes import Actor, Scene

    scene = Scene(640, 480, corpus)
    scene.add(Actor(name, corpus.probe_index(name), variant, 0.0, approach_s=2.0, linger_s=30))
    prev: np.ndarray | None = None
    out = []
    for t in np.arange(1.0, 5.0, 0.1):
        faces = [o for o in pipe.analyze(scene.render(float(t)), liveness=False) if o.quality.ok]
        if not faces:
            prev = None
            continue
        o = max(faces, key=lambda g: g.box[2] * g.box[3])
        lm = marker.run(scene.render(float(t)), o.box, o.landmarks)
        pts = lm.points
        if prev is not None:
            iod = float(np.hypot(*(o.landmarks[1] - o.landmarks[0])))
            motion = float(np.sqrt(((pts - prev) ** 2).sum(axis=1).mean())) / iod
            res = _residual(prev, pts) / iod
            out.append({"motion": motion, "residual": res, "ratio": res / max(motion, 1e-9)})
        prev = pts
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--people", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    from gateway.face.landmarks import DenseLandmarker
    from gateway.face.pipeline import FacePipeline
    from gateway.face.settings import FaceSettings
    from hw_sim.corpus import FaceCorpus

    pipe = FacePipeline.load(args.model_dir, FaceSettings(threads=1))
    marker = DenseLandmarker.load(args.model_dir)
    corpus = FaceCorpus()
    names = corpus.residents(args.people)
    result: dict[str, Any] = {"people": len(names), "fps": 10, "variants": {}}
    for v in VARIANTS:
        rows = [r for n in names for r in _pairs(pipe, marker, corpus, n, v)]
        moving = [r for r in rows if r["motion"] >= 0.01]
        result["variants"][v] = {
            "pairs": len(rows),
            "moving_pairs": len(moving),
            "median_motion": statistics.median(r["motion"] for r in rows) if rows else None,
            "median_residual": statistics.median(r["residual"] for r in rows) if rows else None,
            "median_ratio": statistics.median(r["ratio"] for r in moving) if moving else None,
            "nonrigid_share": {
                str(th): sum(r["ratio"] >= th for r in moving) / len(moving) if moving else None
                for th in THRESHOLDS
            },
        }
        print(v, json.dumps(result["variants"][v]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
