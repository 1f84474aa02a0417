"""Open-set 1:N identification: rank-1, FNIR at FPIR (folder-per-person data).

Gallery: one folder per enrolled person. Probes: one folder per person; a probe whose person
has no gallery folder is a *non-mated* search. A person's score is the best cosine similarity
over their templates (``fusion="max"``) or the similarity to their mean template
(``fusion="mean"``). A probe image without a usable face is a failed search: a miss when
mated, and it cannot raise a false alarm when non-mated; both are counted and reported.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from gateway.errors import GatewayError
from gateway.eval import metrics
from gateway.eval.embedder import EmbeddingCache, Vector, normalise

log = logging.getLogger(__name__)

FPIRS = (1e-2, 1e-3)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".pgm", ".ppm"})
Fusion = Literal["max", "mean"]


class DatasetError(GatewayError):
    """A folder-per-person dataset is missing or malformed."""


def folder_per_person(root: Path) -> dict[str, list[Path]]:
    """``{person: [image paths, sorted]}`` of a folder-per-person directory."""
    if not root.is_dir():
        raise DatasetError(f"{root} is not a directory (expected one sub-folder per person)")
    people: dict[str, list[Path]] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        images = sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if images:
            people[sub.name] = images
    if not people:
        raise DatasetError(f"{root} has no person sub-folders with images")
    return people


@dataclass(frozen=True)
class GalleryMatrix:
    """Templates as rows; ``owner[i]`` is the index into ``people`` of row ``i``."""

    people: tuple[str, ...]
    templates: npt.NDArray[np.float32]
    owner: npt.NDArray[np.int64]

    @classmethod
    def build(
        cls, enrolled: Mapping[str, Sequence[Vector]], fusion: Fusion = "max"
    ) -> GalleryMatrix:
        people = tuple(sorted(p for p, v in enrolled.items() if len(v) > 0))
        rows: list[Vector] = []
        owner: list[int] = []
        for i, person in enumerate(people):
            vecs = list(enrolled[person])
            if fusion == "mean":
                vecs = [normalise(np.mean(np.stack(vecs), axis=0))]
            rows.extend(vecs)
            owner.extend([i] * len(vecs))
        templates = np.stack(rows).astype(np.float32) if rows else np.zeros((0, 128), np.float32)
        return cls(people, templates, np.asarray(owner, dtype=np.int64))

    def person_scores(self, probes: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """(n_probes, n_people) best similarity per person."""
        sims = probes @ self.templates.T
        out = np.full((probes.shape[0], len(self.people)), -np.inf, dtype=np.float32)
        for i in range(len(self.people)):
            cols = self.owner == i
            out[:, i] = sims[:, cols].max(axis=1)
        return out


@dataclass
class SearchOutcome:
    """Top-1/top-2 of every search; failed searches flagged."""

    mated_top: npt.NDArray[np.float64]
    mated_hit: npt.NDArray[np.bool_]
    mated_margin: npt.NDArray[np.float64]
    mated_failed: int
    nonmated_top: npt.NDArray[np.float64]
    nonmated_margin: npt.NDArray[np.float64]
    nonmated_failed: int
    failure_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def n_mated(self) -> int:
        return int(self.mated_top.size)

    @property
    def n_nonmated(self) -> int:
        return int(self.nonmated_top.size)

    def rank1(self) -> float | None:
        return float(np.mean(self.mated_hit)) if self.n_mated else None

    def fnir_at(self, fpir: float, margin: float = 0.0) -> metrics.RateAt:
        """FNIR at FPIR; with ``margin`` > 0 a search is only accepted when its top score also
        leads the runner-up person by ``margin`` (the gateway's identify rule)."""
        mated = np.where(self.mated_margin >= margin, self.mated_top, -np.inf)
        nonmated = np.where(self.nonmated_margin >= margin, self.nonmated_top, -np.inf)
        return metrics.fnir_at_fpir(mated, self.mated_hit, nonmated, fpir)

    def summary(self, margin: float = 0.0) -> dict[str, object]:
        out: dict[str, object] = {
            "mated_searches": self.n_mated,
            "nonmated_searches": self.n_nonmated,
            "failed_mated_searches": self.mated_failed,
            "failed_nonmated_searches": self.nonmated_failed,
            "failure_reasons": dict(self.failure_reasons),
            "failed_search_rule": (
                "a mated search without a face is a miss (counts in rank-1 and FNIR); a "
                "non-mated one cannot false-alarm (counts in FPIR's denominator)"
            ),
            "rank1": self.rank1(),
            "margin": margin,
        }
        fnir = {}
        for fpir in FPIRS:
            r = self.fnir_at(fpir, margin)
            fnir[f"{fpir:g}"] = {
                "fpir": fpir,
                "fnir": r.value,
                "threshold": r.threshold,
                "measured_fpir": r.achieved,
                "not_measurable": r.reason,
            }
        out["fnir_at_fpir"] = fnir
        return out


def search_all(
    gallery: GalleryMatrix,
    probes: Sequence[tuple[str, Vector | None]],
    failure_reasons: Mapping[str, int] | None = None,
) -> SearchOutcome:
    """Search each ``(true person, embedding or None)``; mated when the person is enrolled."""
    index = {p: i for i, p in enumerate(gallery.people)}
    ok = [(who, v) for who, v in probes if v is not None]
    failed = [who for who, v in probes if v is None]
    dim = gallery.templates.shape[1] if gallery.templates.size else 128
    mat = np.stack([v for _, v in ok]).astype(np.float32) if ok else np.zeros((0, dim), np.float32)
    if len(gallery.people) == 0:
        raise DatasetError("the gallery is empty: nobody could be enrolled")
    scores = gallery.person_scores(mat)
    if scores.shape[1] >= 2:
        top2 = -np.sort(-scores, axis=1)[:, :2]
        top, second = top2[:, 0], top2[:, 1]
    else:
        top, second = scores[:, 0], np.full(scores.shape[0], -np.inf, np.float32)
    best = np.argmax(scores, axis=1)
    mated = np.array([who in index for who, _ in ok], dtype=bool)
    truth = np.array([index.get(who, -1) for who, _ in ok], dtype=np.int64)
    margin = (top - second).astype(np.float64)
    n_failed_mated = sum(1 for who in failed if who in index)
    n_failed_nonmated = len(failed) - n_failed_mated
    mated_top = np.concatenate((top[mated].astype(np.float64), np.full(n_failed_mated, -np.inf)))
    mated_hit = np.concatenate((best[mated] == truth[mated], np.zeros(n_failed_mated, bool)))
    mated_margin = np.concatenate((margin[mated], np.full(n_failed_mated, -np.inf)))
    nonmated_top = np.concatenate(
        (top[~mated].astype(np.float64), np.full(n_failed_nonmated, -np.inf))
    )
    nonmated_margin = np.concatenate((margin[~mated], np.full(n_failed_nonmated, -np.inf)))
    return SearchOutcome(
        mated_top,
        mated_hit,
        mated_margin,
        n_failed_mated,
        nonmated_top,
        nonmated_margin,
        n_failed_nonmated,
        dict(failure_reasons or {}),
    )


def evaluate_identification(
    gallery_dir: Path, probes_dir: Path, cache: EmbeddingCache, fusion: Fusion = "max"
) -> tuple[SearchOutcome, dict[str, object]]:
    """Enrol every gallery image, search every probe image; return outcome and enrol stats."""
    gallery_people = folder_per_person(gallery_dir)
    probe_people = folder_per_person(probes_dir)
    enrolled: dict[str, list[Vector]] = {}
    enrol_failed = 0
    for person, paths in gallery_people.items():
        vecs = []
        for p in paths:
            emb = cache.get(p)
            if emb.vector is None:
                enrol_failed += 1
            else:
                vecs.append(emb.vector)
        if vecs:
            enrolled[person] = vecs
        else:
            log.warning("eval identify %s: %s could not be enrolled", cache.embedder.name, person)
    gallery = GalleryMatrix.build(enrolled, fusion)
    probes: list[tuple[str, Vector | None]] = []
    reasons: dict[str, int] = {}
    for person, paths in probe_people.items():
        for p in paths:
            emb = cache.get(p)
            probes.append((person, emb.vector))
            if emb.vector is None:
                key = emb.reason or "unknown"
                reasons[key] = reasons.get(key, 0) + 1
    stats: dict[str, object] = {
        "pipeline": cache.embedder.name,
        "fusion": fusion,
        "gallery_people": len(gallery_people),
        "enrolled_people": len(gallery.people),
        "gallery_templates": int(gallery.templates.shape[0]),
        "gallery_images_failed": enrol_failed,
        "not_enrolled": sorted(set(gallery_people) - set(gallery.people)),
    }
    return search_all(gallery, probes, reasons), stats


def format_identify(stats: Mapping[str, object], summary: Mapping[str, object]) -> str:
    lines = [
        f"pipeline: {stats['pipeline']} (template fusion: {stats['fusion']})",
        (
            f"gallery: {stats['enrolled_people']} of {stats['gallery_people']} people enrolled, "
            f"{stats['gallery_templates']} templates, {stats['gallery_images_failed']} gallery "
            "images without a usable face"
        ),
        f"searches: {summary['mated_searches']} mated ({summary['failed_mated_searches']} failed),"
        f" {summary['nonmated_searches']} non-mated ({summary['failed_nonmated_searches']} failed)"
        f" {summary['failure_reasons'] or ''}".rstrip(),
        f"  rule: {summary['failed_search_rule']}",
    ]
    r1 = summary["rank1"]
    lines.append("rank-1: no mated searches" if r1 is None else f"rank-1: {r1:.4f}")
    if summary.get("margin"):
        lines.append(f"runner-up margin required: {summary['margin']:g}")
    lines += metrics.rate_lines(summary, "fnir_at_fpir", "FNIR", "FPIR")
    return "\n".join(lines)
