"""The two-frame rule on correlated frames: simulated walks of residents and strangers
(issue #17; used by ``eval_pair_frames.py``).

Distinct photographs (the LFW part) are nearly independent frames, which flatters a rule that
pairs frames. Here each approach is a walk rendered by the simulator (hw-sim ``Scene``, one
photograph of the person moving towards the camera, 640x480 at 15 fps, JPEG 80 like the
stream), every frame run through the gate's pipeline (quality gate on, liveness not measured:
it is orthogonal to this rule) and matched against a gallery of residents' enrolment images.
Consecutive frames of one walk are as correlated as the gate's.

- residents: ``corpus.residents(R)``, enrolled with their first images; each walks with two
  other photographs of theirs (``probe_index`` variants 0 and 1);
- strangers: identities never in the gallery, one walk each;
- both split in halves by a hash of the name (``half``), as the LFW part.

Each walk is replayed through the daemon's ``ApproachTracker`` (liveness off, cooldown 0,
single-frame rule off so the comparison is fusion against fusion + pair) at the shipped
threshold and at lowered *stress* thresholds, where strangers are accepted often enough to
count: the ratio (strangers accepted with the rule) / (without) shows what the rule adds on
correlated frames, where no independence bound holds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from single_frame_live import enrol, largest

FPS = 15.0
STRESS_T = (0.24, 0.27, 0.30, 0.33, 0.36, 0.39, 0.42)


@dataclass(frozen=True)
class Seen:
    """The largest face of one frame: quality, best person, score, lead, box."""

    t: float
    ok: bool
    person: str
    top: float
    lead: float
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class Walk:
    name: str
    resident: bool
    half: str
    frames: list[Seen]


def render_walks(residents_n: int, strangers_n: int, seconds: float, half: Any) -> dict[str, Any]:
    """Render and analyse every walk (the expensive part: minutes)."""
    import cv2

    from gateway.demo.models import install_models
    from gateway.demo.run import MODEL_CACHE, SHARED
    from gateway.face.pipeline import FacePipeline
    from gateway.face.settings import FaceSettings
    from hw_sim.corpus import FaceCorpus
    from hw_sim.scenes import Actor, Scene

    model_dir = MODEL_CACHE / "models"
    install_models(model_dir, SHARED)
    pipe = FacePipeline.load(model_dir, FaceSettings())
    corpus = FaceCorpus()
    residents = corpus.residents(residents_n)
    enrolled, gallery = enrol(pipe, corpus, residents)
    others = sorted(
        (n for n in corpus.names() if n not in set(residents)),
        key=lambda n: hashlib.sha256(n.encode()).digest(),
    )[:strangers_n]
    plan = [(n, True, corpus.probe_index(n, v), v) for n in enrolled for v in (0, 1)]
    plan += [(n, False, 0, 0) for n in others]
    walks: list[Walk] = []
    for name, resident, index, seed in plan:
        scene = Scene(640, 480, corpus)
        scene.add(Actor(name, index, "live", 0.0, seconds * 0.6, seconds * 0.4, seed=seed))
        frames: list[Seen] = []
        for i in range(int(seconds * FPS)):
            ok, buf = cv2.imencode(".jpg", scene.render(i / FPS), [cv2.IMWRITE_JPEG_QUALITY, 80])
            if not ok:
                continue
            o = largest(pipe.analyze(cv2.imdecode(buf, cv2.IMREAD_COLOR), liveness=False))
            if o is None:
                continue
            box = tuple(float(x) for x in o.box)
            if o.embedding is None or not o.quality.ok:
                frames.append(Seen(i / FPS, False, "", -1.0, 0.0, box))  # type: ignore[arg-type]
                continue
            s = gallery.person_scores(o.embedding.reshape(1, -1).astype(np.float32))[0]
            order = np.argsort(-s)
            top = float(s[order[0]])
            second = float(s[order[1]]) if len(order) > 1 else 0.0
            best = gallery.people[int(order[0])]
            frames.append(Seen(i / FPS, True, best, top, top - second, box))  # type: ignore[arg-type]
        walks.append(Walk(name, resident, half(name), frames))
    return {"corpus": corpus.source, "gallery": len(enrolled), "walks": walks}


def replay(
    walk: Walk, threshold: float, margin: float, slack: float | None
) -> tuple[int, str] | None:
    """(frame index counted from the walk's first accepted face, person) of the first
    recognition, or None. ``slack`` None: fusion only."""
    from gateway.access import (
        ApproachTracker,
        FaceMatch,
        FusionSettings,
        LivenessPolicy,
        PairRule,
        Recognised,
        SingleFrameRule,
    )

    pair = PairRule(
        enabled=slack is not None, threshold=threshold, margin=margin, slack=slack or 0.0
    )
    tracker = ApproachTracker(
        FusionSettings(
            liveness=LivenessPolicy.OFF,
            cooldown_s=0.0,
            single=SingleFrameRule(enabled=False),
            pair=pair,
        )
    )
    first: int | None = None
    for i, f in enumerate(walk.frames):
        if f.ok and first is None:
            first = i
        matched = f.ok and f.top >= threshold and f.lead >= margin
        face = FaceMatch(
            f.person if matched else None,
            quality_ok=f.ok,
            box=f.box,
            score=f.top if f.ok else None,
            margin=f.lead if f.ok else None,
            candidate=None if matched or not f.ok else f.person,
        )
        ts = 1000.0 + f.t
        for o in tracker.observe("cam", ts, [face], ts + 0.05):
            if isinstance(o, Recognised):
                return i - (first or 0), o.person_id
    return None


def tally(
    walks: list[Walk], threshold: float, margin: float, slack: float | None
) -> dict[str, Any]:
    """Strangers accepted; residents decided (rightly), by the 2nd accepted frame, taken
    for someone else; median frames from the first accepted face to the decision."""
    strangers = [w for w in walks if not w.resident]
    residents = [w for w in walks if w.resident]
    accepted = sum(replay(w, threshold, margin, slack) is not None for w in strangers)
    frames: list[int] = []
    wrong = 0
    for w in residents:
        d = replay(w, threshold, margin, slack)
        if d is None:
            continue
        if d[1] != w.name:
            wrong += 1
        else:
            frames.append(d[0])
    return {
        "strangers": len(strangers),
        "strangers_accepted": accepted,
        "residents": len(residents),
        "residents_decided": len(frames),
        "residents_by_second_frame": sum(1 for x in frames if x <= 1),
        "residents_taken_for_someone_else": wrong,
        "frames_to_decision_median": float(np.median(frames)) if frames else None,
    }


def any_frame_matched(walks: list[Walk], threshold: float, margin: float) -> int:
    """Stranger walks with at least one frame matched on its own: what no frame-pairing rule
    can exceed (the correlation-free bound)."""
    return sum(
        any(f.ok and f.top >= threshold and f.lead >= margin for f in w.frames)
        for w in walks
        if not w.resident
    )


def study(walks: list[Walk], base: Any, slacks: tuple[float, ...]) -> dict[str, Any]:
    """Per slack (and fusion alone): the shipped threshold and the stress thresholds."""
    out: dict[str, Any] = {}
    for slack in (None, *slacks):
        key = "fusion" if slack is None else f"slack {slack}"
        row = {"shipped": tally(walks, base.threshold, base.margin, slack)}
        row["stress_strangers_accepted"] = {
            str(t): tally([w for w in walks if not w.resident], t, base.margin, slack)[
                "strangers_accepted"
            ]
            for t in STRESS_T
        }
        out[key] = row
    out["any_frame_matched"] = {
        str(t): any_frame_matched(walks, t, base.margin) for t in (base.threshold, *STRESS_T)
    }
    return out
