#!/usr/bin/env python3
"""The 3-D check of a git revision (``--base``) against the working tree, same run, same frames.

    python benchmarks/compare_stereo_check.py [--base HEAD~1] [--people 6] [--reps 5] [--json OUT]

The base revision's ``gateway/face/{landmarks,relief,stereo_check,pair_verdict}.py`` are taken
with ``git show`` into a temporary folder (their imports of each other rewritten) and both
checks run on the frames of bench_stereo.py's simulated approaches (every variant, a face
every 0.5 s), interleaved per frame (alternating which runs first), each check from scratch
(no tracking). Reported: medians of wall time and of the thread's CPU time per check, their
ratio new/base (a shared machine inflates wall time; the ratio of the same run stands), the
landmark-model runs per check and the model's share of the CPU time, and whether every
verdict agrees.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks"), str(ROOT / "hw-sim")]

import bench_stereo as bs  # noqa: E402

MODULES = ("landmarks", "relief", "stereo_check", "pair_verdict")


def base_modules(rev: str, folder: Path) -> Any:
    """The base revision's stereo_check module (its sibling modules loaded beside it)."""
    for name in MODULES:
        done = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{rev}:gateway/face/{name}.py"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            continue  # not in that revision (e.g. pair_verdict before it existed)
        text = done.stdout
        for other in MODULES:
            text = text.replace(f"from gateway.face.{other} import", f"from base_{other} import")
        (folder / f"base_{name}.py").write_text(text)
    sys.path.insert(0, str(folder))
    return importlib.import_module("base_stereo_check")


def cases(pipe: Any, corpus: Any, people: int) -> list[tuple[Any, ...]]:
    """(first view, second view, box, 5 landmarks) of the largest good face per frame."""
    from gateway.face.stereo_pair import split_side_by_side
    from hw_sim.camera import SimCamera
    from hw_sim.scenes import Actor
    from hw_sim.stereo import StereoView

    out = []
    for name in corpus.residents(people):
        for variant in bs.VARIANTS:
            cam = SimCamera("bench", corpus, stereo=StereoView(bs.BASELINE_MM, bs.FOCAL_PX))
            cam.add_actor(Actor(name, corpus.probe_index(name), variant, start=0.0, linger_s=6.0))
            for t in np.arange(1.5, 6.01, 0.5):
                first, second = (np.ascontiguousarray(v) for v in split_side_by_side(cam.render(t)))
                good = [o for o in pipe.analyze(first, liveness=False) if o.quality.ok]
                if good:
                    o = max(good, key=lambda g: g.box[2] * g.box[3])
                    out.append((first, second, o.box, o.landmarks))
    return out


def compare(checks: dict[str, Any], frames: list[tuple[Any, ...]], reps: int) -> dict[str, Any]:
    """Interleaved timings, model runs per check and verdict agreement."""
    wall: dict[str, list[float]] = {k: [] for k in checks}
    cpu: dict[str, list[float]] = {k: [] for k in checks}
    runs = dict.fromkeys(checks, 0)
    model_cpu = dict.fromkeys(checks, 0.0)  # the thread's CPU time inside the model's invoke
    for tag, chk in checks.items():
        it = chk.landmarker._it
        invoke = it.invoke

        def counted(_tag: str = tag, _invoke: Any = invoke) -> Any:
            runs[_tag] += 1
            c0 = time.thread_time()
            try:
                return _invoke()
            finally:
                model_cpu[_tag] += (time.thread_time() - c0) * 1e3

        it.invoke = counted
    agree = differ = 0
    order = list(checks.items())
    for rep in range(reps):
        for j, frame in enumerate(frames):
            verdicts = {}
            for tag, chk in order if (j + rep) % 2 == 0 else order[::-1]:
                chk._last = None  # each check from scratch
                w0, c0 = time.perf_counter(), time.thread_time()
                verdicts[tag] = chk.check(*frame)
                cpu[tag].append((time.thread_time() - c0) * 1e3)
                wall[tag].append((time.perf_counter() - w0) * 1e3)
            if rep == 0:
                a, b = verdicts.values()
                same = (a.live, a.reason) == (b.live, b.reason)
                agree, differ = agree + same, differ + (not same)
    base, new = (statistics.median(wall[k]) for k in checks)
    base_cpu, new_cpu = (statistics.median(cpu[k]) for k in checks)
    return {
        "frames": len(frames),
        "checks_per_side": len(wall["base"]),
        "wall_median_ms": {"base": base, "new": new},
        "cpu_median_ms": {"base": base_cpu, "new": new_cpu},
        "ratio_new_to_base_wall": new / base,
        "ratio_new_to_base_cpu": new_cpu / base_cpu,
        "model_runs_per_check": {k: v / len(wall[k]) for k, v in runs.items()},
        "model_share_of_cpu": {k: model_cpu[k] / sum(cpu[k]) for k in checks},
        "verdicts_agree": agree,
        "verdicts_differ": differ,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="HEAD~1", help="git revision to compare against")
    ap.add_argument("--people", type=int, default=6)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    from gateway.face.calibration import ideal_pair
    from gateway.face.landmarks import DenseLandmarker
    from gateway.face.stereo_check import StereoCheck

    pipe, _, _, corpus, _ = bs._setup()
    cal = ideal_pair(640, 480, bs.FOCAL_PX, bs.BASELINE_MM)
    with tempfile.TemporaryDirectory(prefix="stereo-base-") as tmp:
        old = base_modules(args.base, Path(tmp))
        checks = {
            "base": old.StereoCheck(old.DenseLandmarker.load(bs.CACHE), cal),
            "new": StereoCheck(DenseLandmarker.load(bs.CACHE), cal),
        }
        result = {"base": args.base, **compare(checks, cases(pipe, corpus, args.people), args.reps)}
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
