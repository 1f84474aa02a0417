"""LFW pairs files (View 1 ``N`` header, View 2 ``folds N`` header) and pair verification.

A pair where either image yields no face is a *failed pair*. It is never hidden: the report
counts it, 10-fold accuracy counts it as an error, and in the ROC/TAR figures a failed
genuine pair is a false reject at every threshold while a failed impostor pair is a correct
reject (an operational system cannot match a face it did not find).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from gateway.errors import GatewayError
from gateway.eval import metrics
from gateway.eval.embedder import EmbeddingCache

log = logging.getLogger(__name__)

FARS = (1e-2, 1e-3, 1e-4)


class PairsFormatError(GatewayError):
    """A pairs file does not follow the LFW format."""


@dataclass(frozen=True)
class Pair:
    name_a: str
    num_a: int
    name_b: str
    num_b: int
    same: bool
    fold: int

    def paths(self, images_dir: Path) -> tuple[Path, Path]:
        return (
            images_dir / self.name_a / f"{self.name_a}_{self.num_a:04d}.jpg",
            images_dir / self.name_b / f"{self.name_b}_{self.num_b:04d}.jpg",
        )


@dataclass(frozen=True)
class PairsFile:
    pairs: tuple[Pair, ...]
    n_sets: int
    per_set: int
    view: int  # 1 = a single set ("N" header, folds dealt round-robin), 2 = "folds N"


def _int(token: str, path: Path, lineno: int, what: str) -> int:
    try:
        value = int(token)
    except ValueError:
        raise PairsFormatError(f"{path}:{lineno}: {what} {token!r} is not an integer") from None
    if value < 0:
        raise PairsFormatError(f"{path}:{lineno}: {what} {value} is negative")
    return value


def parse_pairs(path: Path, n_folds: int = 10) -> PairsFile:
    """Parse an LFW pairs file.

    View 1 (``pairsDevTrain.txt``: header ``N``, N same pairs then N different pairs): pairs
    are dealt round-robin into ``n_folds`` folds, same and different separately.
    View 2 (``pairs.txt``: header ``S N``, S sets each of N same then N different): fold = set.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PairsFormatError(f"cannot read pairs file {path}: {exc}") from exc
    lines = [(i + 1, ln.split()) for i, ln in enumerate(text.splitlines()) if ln.strip()]
    if not lines:
        raise PairsFormatError(f"{path}: empty pairs file")
    header_no, header = lines[0]
    if len(header) == 1:
        n_sets, per_set, view = 1, _int(header[0], path, header_no, "pair count"), 1
    elif len(header) == 2:
        n_sets = _int(header[0], path, header_no, "fold count")
        per_set = _int(header[1], path, header_no, "pairs per fold")
        view = 2
    else:
        raise PairsFormatError(
            f"{path}:{header_no}: header must be 'N' (View 1) or 'FOLDS N' (View 2), "
            f"got {' '.join(header)!r}"
        )
    body = lines[1:]
    expected = n_sets * 2 * per_set
    if len(body) != expected:
        raise PairsFormatError(
            f"{path}: header announces {expected} pairs ({n_sets} x 2 x {per_set}), "
            f"file has {len(body)}"
        )
    pairs: list[Pair] = []
    for idx, (lineno, tok) in enumerate(body):
        set_no, within = divmod(idx, 2 * per_set)
        same = within < per_set
        if same:
            if len(tok) != 3:
                raise PairsFormatError(
                    f"{path}:{lineno}: a same-person pair has 3 fields 'NAME N1 N2', got {len(tok)}"
                )
            name_a, name_b = tok[0], tok[0]
            num_a = _int(tok[1], path, lineno, "image number")
            num_b = _int(tok[2], path, lineno, "image number")
        else:
            if len(tok) != 4:
                raise PairsFormatError(
                    f"{path}:{lineno}: a different-person pair has 4 fields "
                    f"'NAME1 N1 NAME2 N2', got {len(tok)}"
                )
            name_a, name_b = tok[0], tok[2]
            num_a = _int(tok[1], path, lineno, "image number")
            num_b = _int(tok[3], path, lineno, "image number")
        fold = set_no if view == 2 else (within % per_set) % n_folds
        pairs.append(Pair(name_a, num_a, name_b, num_b, same, fold))
    return PairsFile(tuple(pairs), n_sets, per_set, view)


@dataclass
class PairsResult:
    """Scores of every pair (failed pairs flagged), and the figures derived from them."""

    pipeline: str
    scores: npt.NDArray[np.float64]
    labels: npt.NDArray[np.bool_]
    folds: npt.NDArray[np.int64]
    failed: npt.NDArray[np.bool_]
    failure_reasons: dict[str, int] = field(default_factory=dict)
    failed_images: int = 0
    images: int = 0

    def roc_scores(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(genuine, impostor) with failed pairs at the lowest possible score (never match)."""
        low = float(np.min(self.scores[~self.failed])) - 1.0 if (~self.failed).any() else -2.0
        s = np.where(self.failed, low, self.scores)
        return s[self.labels], s[~self.labels]

    def summary(self) -> dict[str, object]:
        gen, imp = self.roc_scores()
        acc = metrics.kfold_accuracy(self.scores, self.labels, self.folds, self.failed)
        tars = {f"{far:g}": metrics.tar_at_far(gen, imp, far) for far in FARS}
        return {
            "pipeline": self.pipeline,
            "pairs": int(self.labels.size),
            "genuine_pairs": int(self.labels.sum()),
            "impostor_pairs": int((~self.labels).sum()),
            "images": self.images,
            "failed_images": self.failed_images,
            "failed_pairs": int(self.failed.sum()),
            "failed_genuine_pairs": int((self.failed & self.labels).sum()),
            "failed_impostor_pairs": int((self.failed & ~self.labels).sum()),
            "failure_reasons": dict(self.failure_reasons),
            "failed_pair_rule": (
                "accuracy: a failed pair is an error; ROC/TAR: failed genuine = false reject, "
                "failed impostor = correct reject"
            ),
            "accuracy_mean": acc.mean,
            "accuracy_std": acc.std,
            "folds": [
                {"fold": r.fold, "threshold": r.threshold, "accuracy": r.accuracy, "n": r.n}
                for r in acc.folds
            ],
            "tar_at_far": {
                k: {
                    "far": v.target,
                    "tar": v.value,
                    "threshold": v.threshold,
                    "measured_far": v.achieved,
                    "not_measurable": v.reason,
                }
                for k, v in tars.items()
            },
        }


def evaluate_pairs(pairs_file: PairsFile, images_dir: Path, cache: EmbeddingCache) -> PairsResult:
    """Embed every image of the pairs once and score each pair by cosine similarity."""
    n = len(pairs_file.pairs)
    scores = np.full(n, math.nan)
    failed = np.zeros(n, dtype=bool)
    reasons: dict[str, int] = {}
    paths: set[Path] = set()
    for i, pair in enumerate(pairs_file.pairs):
        pa, pb = pair.paths(images_dir)
        paths.update((pa, pb))
        ea, eb = cache.get(pa), cache.get(pb)
        if ea.vector is None or eb.vector is None:
            failed[i] = True
            continue
        scores[i] = float(np.dot(ea.vector, eb.vector))
    for p in paths:
        emb = cache.get(p)
        if emb.vector is None:
            key = emb.reason or "unknown"
            reasons[key] = reasons.get(key, 0) + 1
    failed_images = sum(reasons.values())
    if failed.any():
        log.warning(
            "eval pairs %s: %d of %d pairs failed (%d images without a face: %s)",
            cache.embedder.name,
            int(failed.sum()),
            n,
            failed_images,
            reasons,
        )
    return PairsResult(
        pipeline=cache.embedder.name,
        scores=scores,
        labels=np.array([p.same for p in pairs_file.pairs], dtype=bool),
        folds=np.array([p.fold for p in pairs_file.pairs], dtype=np.int64),
        failed=failed,
        failure_reasons=reasons,
        failed_images=failed_images,
        images=len(paths),
    )


def format_summary(summary: dict[str, object]) -> str:
    """Human-readable lines for the CLI."""
    lines = [
        f"pipeline: {summary['pipeline']}",
        (
            f"pairs: {summary['pairs']} ({summary['genuine_pairs']} genuine, "
            f"{summary['impostor_pairs']} impostor), images: {summary['images']}"
        ),
        f"detection failures: {summary['failed_images']} images, {summary['failed_pairs']} pairs "
        f"({summary['failed_genuine_pairs']} genuine, {summary['failed_impostor_pairs']} impostor)"
        f" {summary['failure_reasons'] or ''}".rstrip(),
        f"  rule: {summary['failed_pair_rule']}",
        f"10-fold accuracy: {summary['accuracy_mean']:.4f} +- {summary['accuracy_std']:.4f}",
    ]
    lines += metrics.rate_lines(summary, "tar_at_far", "TAR", "FAR")
    return "\n".join(lines)
