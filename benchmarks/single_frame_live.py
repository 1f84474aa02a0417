"""The liveness bar of the single-frame rule (issue #17), on the FIRST decidable frame of an
approach, held out by identity (used by ``eval_single_frame.py``).

Data: hw-sim scenes of the corpus's residents (live, printed photo, phone replay; each seed a
different walk), every frame JPEG-coded like the stream and run through the gate's pipeline;
the subject's face is matched against a gallery of the residents (enrolment images).

- A frame is *decidable* when its face passes the quality gate and clears the single-frame
  rule's score and margin bars: only its live probability then stands between it and a
  one-frame grant. A genuine approach's FIRST decidable frame is the frame a lower bar would
  grant on (the far, small face: its live probability is lower than later frames').
- The rule may fire on ANY frame of an attack, so every attack frame that passes the quality
  gate counts (matched or not: the superset).
- Residents are split in two equal halves in the order of a hash of their name (the few
  residents would split unevenly on one bit of it, as the identity part does). On the calibration
  half the bar is the lowest multiple of 0.05, at least ``liveness_threshold``, that clears
  every attack frame by ``LIVE_GUARD`` and whose generalized Pareto tail (top 10 % of the
  attack frames' live probabilities) is within the per-frame budget; every figure is reported
  on the held-out half, with the door (``ApproachTracker``, liveness ``required``) replayed
  with fusion only, the compared bar (the one calibrated on every frame) and the new one.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.eval import metrics

LIVE_GUARD = 0.1
TAIL_SHARE = 0.1
FPS = 15.0
QS = (0.0, 0.01, 0.05, 0.1, 0.5, 0.9, 0.99, 1.0)
ATTACKS = ("photo", "replay")


def half(name: str) -> str:
    """Which half an identity belongs to (stable: a hash of the name)."""
    return "calibration" if hashlib.sha256(name.encode()).digest()[0] % 2 == 0 else "held_out"


def rate(k: int, n: int) -> dict[str, Any]:
    """k of n with its Clopper-Pearson 95% interval (and the rule of 3 when k == 0)."""
    lo, hi = metrics.clopper_pearson(k, n) if n else (0.0, 1.0)
    return {
        "count": k,
        "of": n,
        "rate": k / n if n else None,
        "ci95": [lo, hi],
        "rule_of_three": metrics.rule_of_three(n) if k == 0 and n else None,
    }


def pareto_tail(values: npt.NDArray[np.float64], share: float = TAIL_SHARE) -> Any:
    """P(value >= x): a generalized Pareto fit to the top ``share`` of ``values``."""
    from scipy import stats

    u = float(np.quantile(values, 1 - share))
    shape, _, scale = stats.genpareto.fit(values[values > u] - u, floc=0)

    def sf(x: float) -> float:
        return share * float(stats.genpareto.sf(x - u, shape, loc=0, scale=scale))

    return sf


@dataclass(frozen=True)
class Frame:
    """The subject's face in one frame (None fields: no face)."""

    t: float
    quality_ok: bool
    live: float | None
    top: float
    margin: float
    subject: bool  # the rank-1 person is the subject
    box: tuple[float, float, float, float]

    def decidable(self, score: float, margin: float) -> bool:
        return (
            self.quality_ok
            and self.live is not None
            and self.top >= score
            and self.margin >= margin
        )


@dataclass(frozen=True)
class Approach:
    name: str
    seed: int
    variant: str
    frames: list[Frame]
    half: str  # "calibration" or "held_out"


def split(names: list[str]) -> dict[str, str]:
    """Residents in two halves of equal size (+-1), in the order of a hash of the name."""
    ranked = sorted(names, key=lambda n: hashlib.sha256(n.encode()).digest())
    return {n: ("calibration", "held_out")[i % 2] for i, n in enumerate(ranked)}


def largest(obs: Any) -> Any:
    """The largest face of one frame's observations (None: no face)."""
    return max(obs, key=lambda x: float(x.box[2]) * float(x.box[3])) if obs else None


def enrol(pipe: Any, corpus: Any, residents: list[str]) -> tuple[dict[str, Any], Any]:
    """Each resident's embeddings of their enrolment images, and their gallery."""
    from gateway.eval.identify import GalleryMatrix

    enrolled = {}
    for name in residents:
        faces = [largest(pipe.analyze(im, liveness=False)) for im in corpus.enrolment_images(name)]
        vecs = [o.embedding for o in faces if o is not None and o.embedding is not None]
        if vecs:
            enrolled[name] = vecs
    return enrolled, GalleryMatrix.build(enrolled)


def collect(residents_n: int, seeds: int, seconds: float) -> dict[str, Any]:
    """Run live/photo/replay approaches of ``residents_n`` residents through the pipeline."""
    import cv2

    from gateway.demo.models import install_models
    from gateway.demo.run import MODEL_CACHE, SHARED
    from gateway.face.pipeline import FacePipeline
    from gateway.face.settings import FaceSettings
    from hw_sim.corpus import FaceCorpus
    from hw_sim.scenes import Actor, Scene

    model_dir = MODEL_CACHE / "models"
    if not install_models(model_dir, SHARED):
        return {"error": "../shared/models/antispoof absent: liveness bar not measured"}
    pipe = FacePipeline.load(model_dir, FaceSettings())
    corpus = FaceCorpus()
    residents = corpus.residents(residents_n)
    enrolled, gallery = enrol(pipe, corpus, residents)
    halves = split(list(enrolled))
    out: list[Approach] = []
    for seed in range(seeds):
        for variant in ("live", *ATTACKS):
            for name in (n for n in residents if n in enrolled):
                scene = Scene(640, 480, corpus)
                scene.add(
                    Actor(
                        name,
                        corpus.probe_index(name),
                        variant,
                        start=0.0,
                        approach_s=seconds / 2,
                        linger_s=seconds / 2,
                        seed=seed,
                    )
                )
                frames = []
                for i in range(int(seconds * FPS)):
                    ok, buf = cv2.imencode(
                        ".jpg", scene.render(i / FPS), [cv2.IMWRITE_JPEG_QUALITY, 80]
                    )
                    o = largest(pipe.analyze(cv2.imdecode(buf, cv2.IMREAD_COLOR))) if ok else None
                    if o is None:
                        continue
                    top, second, best = -1.0, -1.0, ""  # no embedding: quality gate failed
                    if o.embedding is not None:
                        s = gallery.person_scores(o.embedding.reshape(1, -1).astype(np.float32))[0]
                        order = np.argsort(-s)
                        top, best = float(s[order[0]]), gallery.people[int(order[0])]
                        second = float(s[order[1]]) if len(order) > 1 else -1.0
                    frames.append(
                        Frame(
                            i / FPS,
                            bool(o.quality.ok),
                            None if o.liveness is None else float(o.liveness),
                            top,
                            top - second,
                            best == name,
                            tuple(float(x) for x in o.box),  # type: ignore[arg-type]
                        )
                    )
                out.append(Approach(name, seed, variant, frames, halves[name]))
    return {"corpus": corpus.source, "residents": len(enrolled), "seeds": seeds, "approaches": out}


def door_outcome(a: Approach, bar: float | None, score: float, margin: float) -> int | None:
    """Index (into the approach's frames) of the door's grant, None: no grant. ``bar`` None:
    fusion only (single-frame rule off)."""
    from gateway.access import ApproachTracker, FaceMatch, FusionSettings, Recognised
    from gateway.access.decision import LivenessPolicy
    from gateway.access.single_frame import SingleFrameRule
    from gateway.face.settings import MatchSettings

    base = MatchSettings()
    rule = SingleFrameRule(
        enabled=bar is not None, min_score=score, min_margin=margin, min_live=bar or 0.5
    )
    tracker = ApproachTracker(
        FusionSettings(liveness=LivenessPolicy.REQUIRED, cooldown_s=0, single=rule)
    )
    for i, f in enumerate(a.frames):
        matched = f.top >= base.threshold and f.margin >= base.margin
        face = FaceMatch(
            a.name if matched else None,
            quality_ok=f.quality_ok,
            live=None if f.live is None else f.live >= base.liveness_threshold,
            box=f.box,
            score=f.top,
            margin=f.margin,
            live_score=f.live,
        )
        ts = 1000.0 + f.t
        if any(isinstance(o, Recognised) for o in tracker.observe("cam", ts, [face], ts + 0.05)):
            return i
    return None


def _first_decidable(a: Approach, score: float, margin: float) -> int | None:
    return next((i for i, f in enumerate(a.frames) if f.decidable(score, margin)), None)


def _attack_lives(
    approaches: list[Approach], bars: tuple[float, float] | None = None
) -> npt.NDArray[np.float64]:
    """Live probabilities of the attack frames past the quality gate; with ``bars`` (score,
    margin) only those the single-frame rule could grant on (the subject matched)."""
    return np.array(
        [
            f.live
            for a in approaches
            if a.variant in ATTACKS
            for f in a.frames
            if f.quality_ok and f.live is not None and (bars is None or f.decidable(*bars))
        ],
        np.float64,
    )


def _first_lives(approaches: list[Approach], score: float, margin: float) -> list[float]:
    out = []
    for a in approaches:
        i = _first_decidable(a, score, margin) if a.variant == "live" else None
        if i is not None:
            out.append(float(a.frames[i].live or 0.0))
    return out


def choose(approaches: list[Approach], threshold: float, budget: float) -> tuple[float, float]:
    """(bar, tail estimate at the bar) from the calibration half's attack frames."""
    attacks = _attack_lives(approaches)
    attack_max = float(attacks.max()) if attacks.size else 0.0
    bar = max(threshold, math.ceil(round((attack_max + LIVE_GUARD) * 20, 9)) / 20)
    sf = pareto_tail(attacks) if attacks.size >= 50 else (lambda x: 1.0)
    while sf(bar) > budget and bar < 0.95:
        bar = round(bar + 0.05, 2)
    return bar, float(sf(bar))


def _door(
    approaches: list[Approach], bar: float | None, score: float, margin: float
) -> dict[str, Any]:
    """Per variant: approaches granted; for live ones also granted on the first decidable
    frame and the frames from it to the grant (median)."""
    out: dict[str, Any] = {}
    for variant in ("live", *ATTACKS):
        these = [a for a in approaches if a.variant == variant]
        grants = [(a, door_outcome(a, bar, score, margin)) for a in these]
        row: dict[str, Any] = {"granted": rate(sum(g is not None for _, g in grants), len(these))}
        if variant == "live":
            firsts = [(_first_decidable(a, score, margin), g) for a, g in grants]
            row["granted_on_first_decidable_frame"] = rate(
                sum(f is not None and g == f for f, g in firsts), len(these)
            )
            waits = [g - f for f, g in firsts if f is not None and g is not None]
            row["frames_first_decidable_to_grant_median"] = (
                float(np.median(waits)) if waits else None
            )
        out[variant] = row
    return out


def liveness_bar(
    live: dict[str, Any],
    *,
    threshold: float,
    score: float,
    margin: float,
    budget: float,
    compared: float,
    default: float,
) -> dict[str, Any]:
    """The bar from the calibration half; held-out figures at it and at ``compared``;
    ``default``: the configured bar (recorded, and judged in ``summary``)."""
    if "approaches" not in live:
        return {"chosen": None, **live}
    parts = {p: [a for a in live["approaches"] if a.half == p] for p in ("calibration", "held_out")}
    cal, held = parts["calibration"], parts["held_out"]
    bar, tail_cal = choose(cal, threshold, budget)
    attacks_cal, attacks_held = _attack_lives(cal), _attack_lives(held)
    firsts = {p: _first_lives(parts[p], score, margin) for p in parts}
    frames: dict[str, Any] = {}
    for b, tag in ((bar, "bar"), (compared, f"compared bar {compared}")):
        frames[f"first decidable live frame >= {tag}"] = rate(
            sum(v >= b for v in firsts["held_out"]), len(firsts["held_out"])
        )
        for variant in ATTACKS:
            vals = _attack_lives([a for a in held if a.variant == variant])
            frames[f"{variant} frames >= {tag}"] = rate(int(np.sum(vals >= b)), len(vals))
    quant = {
        f"{p}:first_decidable_live": np.quantile(v, QS).round(3).tolist() if v else None
        for p, v in firsts.items()
    }
    for p, vals in (("calibration", attacks_cal), ("held_out", attacks_held)):
        quant[f"{p}:attack_frames"] = np.quantile(vals, QS).round(3).tolist() if vals.size else None
    spoofed = sum(frames[f"{v} frames >= bar"]["count"] for v in ATTACKS)
    first = frames["first decidable live frame >= bar"]
    before = frames[f"first decidable live frame >= compared bar {compared}"]
    summary = (
        f"live bar {bar}: held out, attack frames at or above it {spoofed} of "
        f"{attacks_held.size}; genuine approaches whose first decidable frame reaches it "
        f"{first['count']} of {first['of']} ({before['count']} at {compared}); "
        f"the configured default is {default}"
    )
    return {
        "chosen": bar,
        "compared": compared,
        "configured_default": default,
        "held_out_attack_frames_clear": spoofed == 0,
        "summary": summary,
        "budget_per_frame": budget,
        "calibration_attack_max": float(attacks_cal.max()) if attacks_cal.size else None,
        "held_out_attack_max": float(attacks_held.max()) if attacks_held.size else None,
        "tail_estimate_at_bar": {
            "calibration": tail_cal,
            "held_out": float(pareto_tail(attacks_held)(bar)) if attacks_held.size >= 50 else None,
        },
        "tail_estimate_at_compared_bar": {
            p: float(pareto_tail(v)(compared)) if v.size >= 50 else None
            for p, v in (("calibration", attacks_cal), ("held_out", attacks_held))
        },
        "attack_frames_at_or_above": {
            f"{p}, {which} >= {b}": int(np.sum(v >= b))
            for p, part in parts.items()
            for which, v in (
                ("all", _attack_lives(part)),
                ("decidable", _attack_lives(part, (score, margin))),
            )
            for b in sorted({bar, compared, 0.75, 0.8})
        },
        "attack_frames": {
            f"{p}, {which}": int(v.size)
            for p, part in parts.items()
            for which, v in (
                ("all", _attack_lives(part)),
                ("decidable", _attack_lives(part, (score, margin))),
            )
        },
        "decidable_attack_max": {
            p: float(v.max()) if v.size else None
            for p, v in ((p, _attack_lives(part, (score, margin))) for p, part in parts.items())
        },
        "quantiles_0_1_5_10_50_90_99_100": quant,
        "held_out_frames_at_or_above_bar": frames,
        "held_out_door": {
            "fusion_only": _door(held, None, score, margin),
            f"single_frame_compared_bar_{compared}": _door(held, compared, score, margin),
            f"single_frame_bar_{bar}": _door(held, bar, score, margin),
        },
        "approaches": {p: len(v) for p, v in parts.items()},
        "corpus": live["corpus"],
        "residents": live["residents"],
        "seeds": live["seeds"],
    }
