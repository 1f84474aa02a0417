#!/usr/bin/env python3
"""The pair liveness checks (stereo 3-D, RGB+NIR): their added cost per decision and the PAD
figures.

    python benchmarks/bench_stereo.py [--people 10] [--json OUT]

Simulated approaches (hw-sim's stereo camera: a 60 mm rectified pair, 640x480 views): every
corpus identity walks up once live (bona fide) and is presented once as each attack (a
printed photo, the same photo bent round a vertical axis, a phone replay, a tablet replay, a
print on a face-shaped surface). Each frame runs the gate's pipeline on the first view, the
3-D check (:class:`gateway.face.stereo_check.StereoCheck`) and the NIR check
(:class:`gateway.face.nir_check.NirCheck`, the simulator's NIR view 25 mm beside the colour
one) on the largest good face; the approach is
decided by the gate's own fusion (``ApproachTracker``, liveness ``required``) fed with the
face as matched, so only liveness decides. Reported in the ISO/IEC 30107-3 vocabulary:
APCER per attack type (attack approaches accepted) and BPCER (bona fide approaches not
accepted), with counts and exact (Clopper-Pearson) 95 % bounds, per signal alone (3-D, NIR;
the 2-D MiniFASNet model when ../shared has it) and fused as each kind of door fuses them;
and per frame. Cost: each check's time per decision (once per frame, on one face). The 2-D
model is also run on the three real samples of ../shared/faces/spoof.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "hw-sim"))

SHARED = Path(os.environ.get("GATEWAY_SHARED_DIR", ROOT.parent / "shared"))
CACHE = Path.home() / ".cache" / "access-gateway" / "bench-stereo-models"
VARIANTS = ("live", "photo", "bent", "replay", "tablet", "curved")
BASELINE_MM, FOCAL_PX = 60.0, 560.0
NIR_BASELINE_MM = 25.0


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact two-sided binomial bounds for k of n (bisection on the binomial tail)."""
    if n == 0:
        return (0.0, 1.0)

    def tail_ge(p: float) -> float:  # P(X >= k)
        return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))

    def solve(f: Any, target: float) -> float:
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            if f(mid) < target:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    low = 0.0 if k == 0 else solve(tail_ge, alpha / 2)
    high = (
        1.0
        if k == n
        else solve(
            lambda p: -(1 - tail_ge(p) + math.comb(n, k) * p**k * (1 - p) ** (n - k)), -alpha / 2
        )
    )
    return (low, high)


def _setup() -> tuple[Any, Any, Any, Any, bool]:
    from gateway.errors import ModelError
    from gateway.face import models
    from gateway.face.calibration import ideal_pair
    from gateway.face.landmark_models import install_landmarks, landmark_path
    from gateway.face.landmarks import DenseLandmarker
    from gateway.face.nir_check import NirCheck
    from gateway.face.pipeline import FacePipeline
    from gateway.face.settings import FaceSettings
    from gateway.face.stereo_check import StereoCheck

    antispoof = SHARED / "models" / "antispoof"
    have2d = antispoof.is_dir()
    models.install(CACHE, antispoof_dir=antispoof if have2d else None)
    try:
        landmark_path(CACHE)
    except ModelError:
        install_landmarks(CACHE)
    pipe = FacePipeline.load(CACHE, FaceSettings(threads=1))
    check = StereoCheck(DenseLandmarker.load(CACHE), ideal_pair(640, 480, FOCAL_PX, BASELINE_MM))
    from hw_sim.corpus import FaceCorpus

    nir = NirCheck(ideal_pair(640, 480, FOCAL_PX, NIR_BASELINE_MM))
    return pipe, check, nir, FaceCorpus(), have2d


def _frames(
    pipe: Any, checks: tuple[Any, Any], corpus: Any, name: str, variant: str
) -> list[dict[str, Any]]:
    """Per frame of one approach: the 2-D, 3-D and NIR verdicts and the checks' cost."""
    from gateway.face.pair_reuse import VerdictReuse
    from gateway.face.stereo_pair import split_side_by_side
    from hw_sim.camera import SimCamera
    from hw_sim.nir import NirView
    from hw_sim.scenes import Actor
    from hw_sim.stereo import StereoView

    check, nir = checks
    reuse = VerdictReuse()  # as the gate's face path: a verdict stands in for 2 frames
    nir_view = NirView(NIR_BASELINE_MM, FOCAL_PX)
    cam = SimCamera("bench", corpus, stereo=StereoView(BASELINE_MM, FOCAL_PX))
    cam.add_actor(Actor(name, corpus.probe_index(name), variant, start=0.0, linger_s=6.0))
    rows = []
    for t in np.arange(0.5, 6.01, 0.25):
        first, second = (np.ascontiguousarray(v) for v in split_side_by_side(cam.render(t)))
        t_start = time.perf_counter()
        good = [o for o in pipe.analyze(first, liveness=True) if o.quality.ok]
        pipeline_ms = (time.perf_counter() - t_start) * 1e3
        if not good:
            rows.append({"t": float(t), "face": False})
            continue
        o = max(good, key=lambda g: g.box[2] * g.box[3])
        t_check, runs_before = time.perf_counter(), check.second_runs
        relief = reuse.lookup(o.box, o.embedding, float(t))
        measured = relief is None
        reason = None
        if measured:
            v = check.check(first, second, o.box, o.landmarks)
            reuse.store(o.box, o.embedding, v.live, float(t))
            relief, reason = v.live, v.reason
        ms = (time.perf_counter() - t_check) * 1e3
        runs = check.second_runs - runs_before + (measured and reason != "face_too_small")
        n = nir.check(first, cam.scene.render(float(t), nir_view), o.box, o.landmarks)
        rows.append(
            {
                "t": float(t),
                "face": True,
                "passive": None if o.liveness is None else bool(o.liveness >= 0.5),
                "relief": relief,
                "reason": reason,
                "measured": measured,
                "runs": int(runs),
                "ms": ms,
                "nir": n.live,
                "nir_reason": n.reason,
                "nir_ms": n.ms,
                "pipeline_ms": pipeline_ms,
                "box": [float(x) for x in o.box],
            }
        )
    return rows


def _isolated(pipe: Any, check: Any, corpus: Any, name: str, repeat: int = 40) -> dict[str, Any]:
    """The check alone, repeated on one live frame at the door (median, min: less noise)."""
    from gateway.face.stereo_pair import split_side_by_side
    from hw_sim.camera import SimCamera
    from hw_sim.scenes import Actor
    from hw_sim.stereo import StereoView

    cam = SimCamera("bench", corpus, stereo=StereoView(BASELINE_MM, FOCAL_PX))
    cam.add_actor(Actor(name, corpus.probe_index(name), "live", start=0.0, linger_s=6.0))
    first, second = (np.ascontiguousarray(v) for v in split_side_by_side(cam.render(4.0)))
    o = max(pipe.analyze(first, liveness=True), key=lambda g: g.box[2] * g.box[3])
    check_ms = [check.check(first, second, o.box, o.landmarks).ms for _ in range(repeat)]
    run_ms = []
    for _ in range(repeat):
        t = time.perf_counter()
        check.landmarker.run(first, o.box, o.landmarks)
        run_ms.append((time.perf_counter() - t) * 1e3)
    pipe_ms = []
    for _ in range(repeat // 4):
        t = time.perf_counter()
        pipe.analyze(first, liveness=True)
        pipe_ms.append((time.perf_counter() - t) * 1e3)
    return {
        "check_median_ms": statistics.median(check_ms),
        "check_min_ms": min(check_ms),
        "landmark_run_median_ms": statistics.median(run_ms),
        "landmark_run_min_ms": min(run_ms),
        "pipeline_median_ms": statistics.median(pipe_ms),
        "pipeline_min_ms": min(pipe_ms),
    }


def _live(r: dict[str, Any], signal: str) -> bool | None:
    """One frame's liveness verdict on ``signal`` (a door's fusion rule for the fused ones)."""
    from gateway.access.liveness_fusion import fused_live

    pair = r["nir"] if signal in {"nir", "fused_nir"} else r["relief"]
    if signal == "2d":
        return bool(r["passive"]) if r["passive"] is not None else None
    passive = r["passive"] if signal.startswith("fused") else None
    return fused_live(passive, pair, has_pair=True)


def _decide(rows: list[dict[str, Any]], signal: str) -> bool:
    """Whether the gate's fusion (liveness required) accepts the approach on ``signal``."""
    return _decided_at(rows, signal) is not None


def _decided_at(rows: list[dict[str, Any]], signal: str) -> int | None:
    """The frame on which the gate's fusion (liveness required) accepts the approach."""
    from gateway.access import ApproachTracker, FaceMatch, FusionSettings, Recognised
    from gateway.access.decision import LivenessPolicy

    tracker = ApproachTracker(FusionSettings(liveness=LivenessPolicy.REQUIRED, cooldown_s=0))
    for i, r in enumerate(rows):
        ts = 1000.0 + r["t"]
        if not r["face"]:
            matches: list[FaceMatch] = []
        else:
            live = _live(r, signal)
            matches = [FaceMatch("p", quality_ok=True, live=live, box=tuple(r["box"]))]
        if any(isinstance(o, Recognised) for o in tracker.observe("bench", ts, matches)):
            return i
    return None


def _rate(k: int, n: int) -> dict[str, Any]:
    lo, hi = clopper_pearson(k, n)
    return {"k": k, "n": n, "rate": k / n if n else None, "ci95": [lo, hi]}


def section(data: dict[str, Any]) -> list[str]:
    """REPORT.md's section: APCER/BPCER per signal (ISO/IEC 30107-3) and the check's cost."""
    names = {
        "3d": "3-D relief alone",
        "nir": "NIR skin check alone",
        "2d": "2-D MiniFASNet alone",
        "fused": "stereo door: 3-D + 2-D fused (the rule)",
        "fused_nir": "rgb+nir door: NIR + 2-D fused (the rule)",
    }
    table = data["table"]
    cols = list(next(iter(table.values())))
    lines = [
        "### Presentation attack detection, simulated approaches",
        "",
        (
            f"{data['people']} identities, each once live (bona fide) and once per attack; "
            "the gate's fusion (liveness required) decides each approach; "
            f"{data['baseline_mm']:.0f} mm stereo baseline, NIR camera "
            f"{data.get('nir_baseline_mm', NIR_BASELINE_MM):.0f} mm beside the colour one. "
            "Rates with counts and exact (Clopper-Pearson) 95 % bounds. tablet: a life-size "
            "face on a tablet; curved: a print on a face-shaped surface (the live head's "
            "relief, rigid). Simulated NIR reflectances are textbook values: the NIR rows "
            "show the check's logic, not its real-world margin; a laser print is not simulated."
        ),
        "",
        "| signal | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for sig, row in table.items():
        cells = [
            f"{r['k']}/{r['n']} = {r['rate']:.2f} ({r['ci95'][0]:.2f}-{r['ci95'][1]:.2f})"
            for r in row.values()
        ]
        lines.append(f"| {names.get(sig, sig)} | " + " | ".join(cells) + " |")
    c, i = data["cost_ms"], data["isolated"]
    frames = "; ".join(
        f"{v}: {f['relief_ok']} of {f['measured']}" for v, f in data["frames"].items()
    )
    nir_frames = "; ".join(
        f"{v}: {f['nir_ok']} of {f['nir_measured']}"
        for v, f in data["frames"].items()
        if "nir_ok" in f
    )
    lines += [
        "",
        f"Frames whose relief passed (per frame, before fusion): {frames}.",
        "",
        f"Frames whose NIR response passed: {nir_frames}.",
        "",
        *_real_lines(data.get("real_samples")),
        "",
        *_cost_lines(c, i, data.get("load_avg")),
        "",
        (
            f"NIR check cost per decision: median {c.get('nir_median', 0):.2f} ms, p95 "
            f"{c.get('nir_p95', 0):.2f} ms (no model: sampling and statistics)."
        ),
        "",
    ]
    return lines


Approaches = dict[str, list[list[dict[str, Any]]]]


def _tables(approaches: Approaches, n: int, have2d: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """(APCER/BPCER per signal, per-frame relief counts per presentation)."""
    signals = ["3d", "nir", *(["2d"] if have2d else []), "fused", "fused_nir"]
    table: dict[str, dict[str, Any]] = {}
    for sig in signals:
        accepted = {v: sum(_decide(rows, sig) for rows in approaches[v]) for v in VARIANTS}
        table[sig] = {
            "BPCER": _rate(n - accepted["live"], n),
            **{f"APCER {v}": _rate(accepted[v], n) for v in VARIANTS if v != "live"},
        }
    frames: dict[str, Any] = {}
    for v in VARIANTS:
        measured = [
            r for rows in approaches[v] for r in rows if r["face"] and r["relief"] is not None
        ]
        nir = [r for rows in approaches[v] for r in rows if r["face"] and r["nir"] is not None]
        frames[v] = {
            "measured": len(measured),
            "relief_ok": sum(r["relief"] for r in measured),
            "nir_measured": len(nir),
            "nir_ok": sum(r["nir"] for r in nir),
        }
    return table, frames


def _cost(approaches: Approaches) -> dict[str, Any]:
    """The check's time: per decision (its frames summed, from the approach's first face to
    the frame the door opens on: bona fide approaches the stereo door accepts), per frame
    (a reused verdict costs the look-up), and per measurement (a face too small to measure
    costs ~nothing and is left out); with the 2-D pipeline's time on the same frames."""
    faces = [r for v in VARIANTS for rows in approaches[v] for r in rows if r["face"]]
    ran = [r for r in faces if r["measured"] and r["reason"] != "face_too_small"]
    per_decision, runs, frames = [], [], []
    for rows in approaches["live"]:
        at = _decided_at(rows, "fused")
        if at is not None:
            upto = [r for r in rows[: at + 1] if r["face"]]
            per_decision.append(sum(r["ms"] for r in upto))
            runs.append(sum(r["runs"] for r in upto))
            frames.append(len(upto))
    per_frame = [r["ms"] for r in faces]
    nir_ms = [r["nir_ms"] for r in faces]
    return {
        "nir_median": statistics.median(nir_ms),
        "nir_p95": float(np.percentile(nir_ms, 95)),
        "median": statistics.median(r["ms"] for r in ran),
        "p95": float(np.percentile([r["ms"] for r in ran], 95)),
        "n": len(ran),
        "frame_mean": statistics.fmean(per_frame),
        "frame_p95": float(np.percentile(per_frame, 95)),
        "frames": len(per_frame),
        "measured_share": len([r for r in faces if r["measured"]]) / max(1, len(faces)),
        "decision_median": statistics.median(per_decision) if per_decision else None,
        "decision_p95": float(np.percentile(per_decision, 95)) if per_decision else None,
        "decisions": len(per_decision),
        "frames_per_decision": statistics.median(frames) if frames else None,
        "pipeline_median": statistics.median(r["pipeline_ms"] for r in faces),
        "landmark_runs_per_decision": statistics.median(runs) if runs else None,
        "landmark_runs_per_measurement": sum(r["runs"] for r in ran) / max(1, len(ran)),
    }


def _real_samples(pipe: Any) -> list[dict[str, Any]] | None:
    """The 2-D model on ../shared/faces/spoof (F: attacks, T: live), largest face of each."""
    import cv2

    folder = SHARED / "faces" / "spoof"
    if not folder.is_dir():
        return None
    out = []
    for path in sorted(folder.glob("*.jpg")):
        img = cv2.imread(str(path))
        faces = pipe.analyze(img, liveness=True) if img is not None else []
        o = max(faces, key=lambda g: g.box[2] * g.box[3], default=None)
        score = None if o is None or o.liveness is None else float(o.liveness)
        out.append(
            {
                "sample": path.name,
                "bona_fide": "_T" in path.stem,
                "score": score,
                "accepted": None if score is None else score >= 0.5,
            }
        )
    return out


def _real_lines(samples: list[dict[str, Any]] | None) -> list[str]:
    if not samples:
        return ["Real samples (../shared/faces/spoof): not run (absent).", ""]
    cells = "; ".join(
        f"{s['sample']} ({'bona fide' if s['bona_fide'] else 'attack'}): "
        + ("no face" if s["score"] is None else f"live score {s['score']:.2f}, ")
        + ("" if s["accepted"] is None else ("accepted" if s["accepted"] else "rejected"))
        for s in samples
    )
    return [
        (
            "2-D MiniFASNet on the three real samples of ../shared/faces/spoof (threshold "
            f"0.5; too few for rates): {cells}."
        ),
    ]


def _print(result: dict[str, Any]) -> None:
    print(f"stereo 3-D check: {result['people']} people x {len(VARIANTS)} presentations")
    for sig, row in result["table"].items():
        cells = ", ".join(
            f"{k} {r['k']}/{r['n']} ({r['ci95'][0]:.2f}-{r['ci95'][1]:.2f})" for k, r in row.items()
        )
        print(f"  {sig:5}: {cells}")
    for v, f in result["frames"].items():
        print(
            f"  frames {v}: relief passed {f['relief_ok']} of {f['measured']} measured; "
            f"NIR passed {f['nir_ok']} of {f['nir_measured']}"
        )
    print(f"  NIR check cost: median {result['cost_ms']['nir_median']:.2f} ms")
    for line in _real_lines(result.get("real_samples"))[:1]:
        print(f"  {line}")
    for line in _cost_lines(result["cost_ms"], result["isolated"], result.get("load_avg")):
        print(f"  {line}")


def _cost_lines(c: dict[str, Any], i: dict[str, Any], load: dict[str, Any] | None) -> list[str]:
    """The 3-D check's cost: per decision, per frame, per measurement; ratios to the 2-D
    pipeline measured in the same run; the machine's load."""
    if "decision_median" not in c:  # a result saved before the verdict reuse
        return [f"3-D check cost per frame: median {c['median']:.1f} ms (p95 {c['p95']:.1f})."]
    pipe = c["pipeline_median"]
    loads = (
        "load average (1 min) {:.1f} at the start, {:.1f} at the end on 2 cores".format(
            load["start"][0], load["end"][0]
        )
        if load
        else "load not recorded"
    )
    return [
        (
            f"3-D check, added cost per decision (its frames summed from the approach's first "
            f"face to the frame the door opens on, {c['decisions']} bona fide approaches, "
            f"median {c['frames_per_decision']:.0f} frames): median "
            f"{c['decision_median']:.1f} ms, p95 {c['decision_p95']:.1f} ms, "
            f"{c['landmark_runs_per_decision']:.0f} landmark-model runs (median). Target: "
            f"<= 10 ms. Per frame with a face (a verdict stands in for the next 2 frames of "
            f"the same face, so {c['measured_share']:.0%} of frames measure): mean "
            f"{c['frame_mean']:.1f} ms, p95 {c['frame_p95']:.1f} ms over {c['frames']} frames. "
            f"One measurement ({c['landmark_runs_per_measurement']:.2f} model runs): median "
            f"{c['median']:.1f} ms, p95 {c['p95']:.1f} ms (n={c['n']})."
        ),
        "",
        (
            f"Same-run reference, the 2-D pipeline per frame: median {pipe:.1f} ms; ratios: "
            f"per decision x{c['decision_median'] / pipe:.3f}, per frame "
            f"x{c['frame_mean'] / pipe:.3f}, per measurement x{c['median'] / pipe:.3f} "
            f"({loads}; multiply a ratio by a quiet run's pipeline time for the quiet cost). "
            f"Repeated on one frame: check median {i['check_median_ms']:.1f} ms (min "
            f"{i['check_min_ms']:.1f}), one model run median {i['landmark_run_median_ms']:.1f} "
            f"ms (min {i['landmark_run_min_ms']:.1f}), pipeline median "
            f"{i['pipeline_median_ms']:.1f} ms (min {i['pipeline_min_ms']:.1f})."
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--people", type=int, default=10)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    load_start = os.getloadavg()
    pipe, check, nir, corpus, have2d = _setup()
    names = [*corpus.residents(args.people), *corpus.strangers(args.people)][: args.people]
    approaches: Approaches = {v: [] for v in VARIANTS}
    for name in names:
        for v in VARIANTS:
            approaches[v].append(_frames(pipe, (check, nir), corpus, name, v))
    table, frames = _tables(approaches, len(names), have2d)
    cost = _cost(approaches)
    result = {
        "load_avg": {"start": list(load_start), "end": list(os.getloadavg())},
        "isolated": _isolated(pipe, check, corpus, names[0]),
        "people": len(names),
        "passive_model": have2d,
        "baseline_mm": BASELINE_MM,
        "nir_baseline_mm": NIR_BASELINE_MM,
        "real_samples": _real_samples(pipe) if have2d else None,
        "table": table,
        "frames": frames,
        "cost_ms": cost,
        "seconds": time.perf_counter() - t0,
    }
    _print(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
