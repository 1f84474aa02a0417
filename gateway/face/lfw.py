"""LFW pairs files and 10-fold verification accuracy (small; the eval package may replace it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Pair:
    """Two LFW images and whether they show the same person."""

    left: Path
    right: Path
    same: bool


def image_path(root: Path, name: str, number: int) -> Path:
    """``root/Name/Name_NNNN.jpg``."""
    return root / name / f"{name}_{number:04d}.jpg"


def parse_pairs(pairs_file: Path, images_root: Path) -> list[Pair]:
    """Parse a pairs file (first line = count or folds x count; 3 fields same, 4 different)."""
    lines = [ln.split() for ln in pairs_file.read_text().splitlines() if ln.strip()]
    if not lines:
        raise ValueError(f"{pairs_file}: empty pairs file")
    out: list[Pair] = []
    for no, f in enumerate(lines[1:], start=2):
        if len(f) == 3:
            out.append(
                Pair(
                    image_path(images_root, f[0], int(f[1])),
                    image_path(images_root, f[0], int(f[2])),
                    True,
                )
            )
        elif len(f) == 4:
            out.append(
                Pair(
                    image_path(images_root, f[0], int(f[1])),
                    image_path(images_root, f[2], int(f[3])),
                    False,
                )
            )
        else:
            raise ValueError(f"{pairs_file}:{no}: expected 3 or 4 fields, got {len(f)}")
    return out


def best_threshold(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy) maximising accuracy of ``score >= threshold`` on these pairs."""
    order = np.argsort(scores)
    s, y = scores[order], same[order].astype(bool)
    n = len(s)
    # threshold at s[i]: predict same for i..n-1
    pos_at_or_above = np.cumsum(y[::-1])[::-1]
    neg_below = np.concatenate([[0], np.cumsum(~y)[:-1]])
    acc = (pos_at_or_above + neg_below) / n
    i = int(np.argmax(acc))
    thr = float(s[i] if i == 0 else (s[i] + s[i - 1]) / 2)
    all_diff = float((~y).sum() / n)
    if all_diff > acc[i]:
        return float(s[-1] + 1e-6), all_diff
    return thr, float(acc[i])


def tenfold_accuracy(scores: np.ndarray, same: np.ndarray, folds: int = 10) -> tuple[float, float]:
    """(mean, std) accuracy: threshold chosen on 9 folds, tested on the 10th (contiguous folds)."""
    scores = np.asarray(scores, np.float64)
    same = np.asarray(same, bool)
    idx = np.array_split(np.arange(len(scores)), folds)
    accs = []
    for k in range(folds):
        test = idx[k]
        train = np.concatenate([idx[j] for j in range(folds) if j != k])
        thr, _ = best_threshold(scores[train], same[train])
        accs.append(float(((scores[test] >= thr) == same[test]).mean()))
    return float(np.mean(accs)), float(np.std(accs))
