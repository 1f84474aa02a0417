#!/usr/bin/env python
"""Experiment: what enrolment count, flip fusion, template fusion and the quality gate do to FNIR.

Data: ../shared/faces/lfw-dev/images (folder per person, never copied). Protocol:
- enrolled people: every identity with >= MIN_IMAGES (6) images. Gallery = the first k of
  their first 5 images (k = 1, 3, 5); mated probes = their images from the 6th on (the same
  probe set for every k).
- non-mated probes: the first image of every identity with fewer than MIN_IMAGES images
  (nobody in the gallery), so FPIR 1% and 0.1% are measurable (>= 1000 searches).
- every image is embedded once per pipeline (plain and flip-fused embedding from the same
  detection); conditions are then evaluated on the stored embeddings.
- quality gate ON: an image whose face fails the gateway's quality gate is not enrolled (a
  person with no passing image is not enrolled) and is not searched (a mated probe then
  counts as a miss, a non-mated probe cannot false-alarm). OFF: every detected face is used.
- a detection failure is always counted: a miss for a mated probe, never enrolled.

Prints a table of rank-1 and FNIR at FPIR 1% / 0.1% per condition; ``--json OUT`` writes it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.eval.embedder import Vector, normalise, read_image  # noqa: E402
from gateway.eval.identify import GalleryMatrix, search_all  # noqa: E402

DEFAULT_DATA = ROOT / ".." / "shared" / "faces" / "lfw-dev" / "images"
MIN_IMAGES = 6
ENROL_POOL = 5
COUNTS = (1, 3, 5)
FPIRS = (1e-2, 1e-3)


@dataclass
class Sample:
    person: str
    path: Path
    plain: Vector | None
    flip: Vector | None
    quality_ok: bool
    quality_reason: str | None
    reason: str | None


def split(data: Path) -> tuple[dict[str, list[Path]], list[Path]]:
    """(enrolled people with their sorted images, non-mated probe images)."""
    people = {d.name: sorted(d.glob("*.jpg")) for d in sorted(data.iterdir()) if d.is_dir()}
    enrolled = {p: imgs for p, imgs in people.items() if len(imgs) >= MIN_IMAGES}
    nonmated = [imgs[0] for p, imgs in people.items() if 0 < len(imgs) < MIN_IMAGES]
    return enrolled, nonmated


class OpenCVVariants:
    """Plain and flip-fused embeddings from the OpenCV reference; quality from the gateway."""

    name = "opencv"

    def __init__(self) -> None:
        import cv2

        from gateway.eval.reference import OpenCVReference

        self._cv2 = cv2
        self.ref = OpenCVReference()
        self.quality = gateway_quality_fn()

    def __call__(
        self, img: np.ndarray
    ) -> tuple[Vector | None, Vector | None, bool, str | None, str | None]:
        faces = self.ref.detect(img)
        if faces.shape[0] == 0:
            return None, None, False, None, "no_face"
        rec = self.ref._rec
        crop = rec.alignCrop(img, faces[0])
        a = normalise(np.asarray(rec.feature(crop)).ravel())
        b = normalise(np.asarray(rec.feature(self._cv2.flip(crop, 1))).ravel())
        ok, why = (True, None) if self.quality is None else self.quality(img, faces[0])
        return a, normalise(a + b), ok, why, None


def gateway_quality_fn() -> Any:
    """The gateway's quality gate (default thresholds) as f(image, yunet_row) -> (ok, reason)."""
    try:
        from gateway.face.align import align
        from gateway.face.quality import assess
        from gateway.face.settings import QualityThresholds
    except ImportError:
        return None
    thresholds = QualityThresholds()

    def fn(img: np.ndarray, row: np.ndarray) -> tuple[bool, str | None]:
        lm = np.asarray(row[4:14], np.float64).reshape(5, 2)
        v = assess(lm, align(img, lm), thresholds)
        return bool(v.ok), v.reason

    return fn


class GatewayVariants:
    """The gateway pipeline's own stages, as ``FacePipeline.analyze`` chains them: its detector,
    aligner and quality gate (default thresholds), then its onnxruntime SFace on the crop and
    its mirror in one batch, so plain and flip-fused embeddings come from one run and the gate
    can be switched off afterwards. For the first CHECK images ``analyze`` itself is run too
    and its embedding must equal the plain one (differences counted in ``mismatch``)."""

    name = "gateway"
    CHECK = 50

    def __init__(self) -> None:
        from gateway.eval.pipelines import GatewayEmbedder, gateway_model_dir
        from gateway.face.align import align
        from gateway.face.quality import assess

        self.pipe = GatewayEmbedder.load(gateway_model_dir()).pipeline
        self.align = align
        self.assess = assess
        self.mismatch = 0
        self.checked = 0

    def __call__(
        self, img: np.ndarray
    ) -> tuple[Vector | None, Vector | None, bool, str | None, str | None]:
        dets = self.pipe.detect(img)
        if not dets:
            return None, None, False, None, "no_face"
        d = max(dets, key=lambda x: float(x.box[2]) * float(x.box[3]))
        crop = self.align(img, d.landmarks)
        verdict = self.assess(d.landmarks, crop, self.pipe.settings)
        if self.pipe.settings.flip_fusion:
            raise RuntimeError("GatewayVariants needs flip_fusion off in the pipeline")
        raw = self.pipe.embedder.embed([crop, np.ascontiguousarray(crop[:, ::-1])])
        a, b = normalise(raw[0]), normalise(raw[1])
        if self.checked < self.CHECK:
            self.checked += 1
            obs = [o for o in self.pipe.analyze(img, liveness=False) if o.embedding is not None]
            if obs:
                o = max(obs, key=lambda x: float(x.box[2]) * float(x.box[3]))
                if float(np.dot(normalise(o.embedding), a)) < 0.999:
                    self.mismatch += 1
        return a, normalise(a + b), bool(verdict.ok), verdict.reason, None


def embed_all(variants: Any, enrolled: dict[str, list[Path]], nonmated: list[Path]) -> list[Sample]:
    jobs = [(p, path) for p, imgs in enrolled.items() for path in imgs[: ENROL_POOL + 100]]
    jobs += [(path.parent.name, path) for path in nonmated]
    out = []
    t0 = time.perf_counter()
    for i, (person, path) in enumerate(jobs):
        img = read_image(path)
        if img is None:
            out.append(Sample(person, path, None, None, False, None, "unreadable"))
            continue
        a, b, ok, why, reason = variants(img)
        out.append(Sample(person, path, a, b, ok, why, reason))
        if (i + 1) % 500 == 0:
            print(
                f"  {variants.name}: {i + 1}/{len(jobs)} images, {time.perf_counter() - t0:.0f} s",
                file=sys.stderr,
            )
    return out


def evaluate(samples: list[Sample], enrolled: dict[str, list[Path]]) -> list[dict[str, Any]]:
    by_path = {s.path: s for s in samples}
    rows = []
    for flip in (False, True):
        for gate in (False, True):

            def vec(s: Sample, flip: bool = flip, gate: bool = gate) -> Vector | None:
                if gate and not s.quality_ok:
                    return None
                return s.flip if flip else s.plain

            probes: list[tuple[str, Vector | None]] = []
            for person, imgs in enrolled.items():
                probes += [(person, vec(by_path[p])) for p in imgs[ENROL_POOL:]]
            probes += [(s.person, vec(s)) for s in samples if s.person not in enrolled]
            for k in COUNTS:
                for fusion in ("max", "mean") if k > 1 else ("max",):
                    gal: dict[str, list[Vector]] = {}
                    for person, imgs in enrolled.items():
                        vs = [v for p in imgs[:k] if (v := vec(by_path[p])) is not None]
                        if vs:
                            gal[person] = vs
                    g = GalleryMatrix.build(gal, fusion)
                    # people who could not be enrolled: their probes are mated searches that
                    # cannot succeed; search_all would call them non-mated, so relabel.
                    lost = set(enrolled) - set(gal)
                    ps = [(("__not_enrolled__" if who in lost else who), v) for who, v in probes]
                    out = search_all(g, [x for x in ps if x[0] != "__not_enrolled__"])
                    n_lost = sum(1 for who, _ in ps if who == "__not_enrolled__")
                    mated_top = np.concatenate((out.mated_top, np.full(n_lost, -np.inf)))
                    mated_hit = np.concatenate((out.mated_hit, np.zeros(n_lost, bool)))
                    from gateway.eval import metrics

                    row: dict[str, Any] = {
                        "flip": flip,
                        "quality_gate": gate,
                        "enrol_images": k,
                        "fusion": fusion,
                        "enrolled_people": len(gal),
                        "not_enrolled_people": len(lost),
                        "mated": int(mated_top.size),
                        "nonmated": out.n_nonmated,
                        "failed_mated": out.mated_failed + n_lost,
                        "failed_nonmated": out.nonmated_failed,
                        "rank1": float(np.mean(mated_hit)),
                    }
                    for fpir in FPIRS:
                        r = metrics.fnir_at_fpir(mated_top, mated_hit, out.nonmated_top, fpir)
                        row[f"fnir@{fpir:g}"] = r.value
                        row[f"thr@{fpir:g}"] = r.threshold
                        if r.reason:
                            row[f"note@{fpir:g}"] = r.reason
                    rows.append(row)
    return rows


def calibrate(name: str, samples: list[Sample], target: float = 1e-4) -> dict[str, Any]:
    """``gateway calibrate`` logic on every genuine/impostor comparison among the samples."""
    from gateway.eval import calibrate as cal

    out: dict[str, Any] = {}
    for flip in (False, True):
        people: dict[str, list[Vector]] = {}
        for s in samples:
            v = s.flip if flip else s.plain
            if v is not None:
                people.setdefault(s.person, []).append(v)
        gen, imp = cal.pair_scores_from_vectors(people)
        c = cal.calibrate_scores(gen.astype(np.float64), imp.astype(np.float64), target)
        margin, n_acc = cal.choose_margin(*cal.leave_one_out(people), c.threshold, 0.01)
        out["flip" if flip else "plain"] = {
            "target_fmr": target,
            "threshold": c.threshold,
            "n_genuine": c.n_genuine,
            "n_impostor": c.n_impostor,
            "false_matches": c.false_matches,
            "fmr_ci95": c.fmr_ci95,
            "rule_of_three": c.rule_of_three,
            "fnmr": c.fnmr,
            "margin_1pct_loss": margin,
            "margin_from_correct_accepts": n_acc,
            "note": c.note,
        }
        print(
            f"{name} calibration ({'flip' if flip else 'plain'}, no quality gate): "
            f"threshold {c.threshold:.4f} for FMR "
            f"{target:g} on {c.n_impostor} impostor comparisons: {c.false_matches} false matches, "
            f"95% CI {c.fmr_ci95[0]:.1e}..{c.fmr_ci95[1]:.1e}; "
            f"FNMR {c.fnmr:.4f}; margin {margin:.4f}"
        )
    return out


def onoff(flag: bool) -> str:
    return "on" if flag else "off"


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| pipeline | flip | quality gate | enrol k | fusion | rank-1 | FNIR@FPIR 1% | thr "
        "| FNIR@FPIR 0.1% | thr | failed mated |"
    )
    lines = [head, "|" + "---|" * 11]

    def f(v: Any, fmt: str) -> str:
        return "n/m" if v is None else format(v, fmt)

    for r in rows:
        lines.append(
            f"| {r['pipeline']} | {onoff(r['flip'])} | {onoff(r['quality_gate'])} "
            f"| {r['enrol_images']} | {r['fusion']} | {r['rank1']:.4f} "
            f"| {f(r['fnir@0.01'], '.4f')} | {f(r['thr@0.01'], '.3f')} "
            f"| {f(r['fnir@0.001'], '.4f')} | {f(r['thr@0.001'], '.3f')} "
            f"| {r['failed_mated']}/{r['mated']} |"
        )
    notes = sorted({v for r in rows for k, v in r.items() if k.startswith("note@")})
    lines += ["", *(f"n/m = {n}" for n in notes)] if notes else []
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder-per-person images")
    ap.add_argument("--pipeline", choices=("gateway", "opencv", "both"), default="both")
    ap.add_argument("--json", type=Path, default=None, metavar="OUT")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(
            f"eval_enrolment: data {args.data} absent (../shared not available); nothing measured"
        )
        return 2
    enrolled, nonmated = split(args.data)
    print(
        f"{len(enrolled)} enrolled people (>= {MIN_IMAGES} images), "
        f"{sum(len(v) - ENROL_POOL for v in enrolled.values())} mated probes, "
        f"{len(nonmated)} non-mated probes"
    )
    names = ("gateway", "opencv") if args.pipeline == "both" else (args.pipeline,)
    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    timing: dict[str, float] = {}
    calibration: dict[str, Any] = {}
    mismatches: dict[str, int] = {}
    for name in names:
        try:
            variants = GatewayVariants() if name == "gateway" else OpenCVVariants()
        except Exception as exc:  # noqa: BLE001 - report which pipeline could not load, go on
            errors[name] = f"{type(exc).__name__}: {exc}"
            print(f"pipeline {name} unavailable: {errors[name]}")
            continue
        t0 = time.perf_counter()
        samples = embed_all(variants, enrolled, nonmated)
        timing[name] = time.perf_counter() - t0
        q_known = name == "gateway" or getattr(variants, "quality", None) is not None
        for r in evaluate(samples, enrolled):
            if r["quality_gate"] and not q_known:
                continue
            rows.append({"pipeline": name, **r})
        calibration[name] = calibrate(name, samples)
        q_fail = sum(1 for s in samples if s.plain is not None and not s.quality_ok)
        print(
            f"{name}: {len(samples)} images in {timing[name]:.0f} s, "
            f"{sum(1 for s in samples if s.plain is None)} without a face, "
            f"{q_fail} failing the quality gate"
            + ("" if q_known else " (no quality gate available)")
        )
        if isinstance(variants, GatewayVariants):
            print(
                f"gateway: {variants.mismatch} of {variants.checked} analyze() embeddings "
                "differ from the stage-by-stage ones"
            )
            mismatches[name] = variants.mismatch
    print(table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "protocol": __doc__,
                    "enrolled_people": len(enrolled),
                    "nonmated_probes": len(nonmated),
                    "rows": rows,
                    "calibration": calibration,
                    "errors": errors,
                    "seconds": timing,
                    "embedding_mismatches": mismatches,
                },
                indent=2,
            )
            + "\n"
        )
        print(f"wrote {args.json}")
    return 0 if rows else 1


if __name__ == "__main__":
    raise SystemExit(main())
