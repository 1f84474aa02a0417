"""Choose the match threshold (and runner-up margin) for a target false-match rate.

Data: an LFW-style pairs file with its images directory, or a folder-per-person directory
from which every genuine and impostor comparison is generated (and, for the margin, every
leave-one-out 1:N search). Bounds: exact Clopper-Pearson 95% interval on the FMR at the chosen
threshold, and the 'rule of 3' (3/N) when no impostor reaches it.
"""

from __future__ import annotations

import logging
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from gateway.errors import ConfigError
from gateway.eval import metrics
from gateway.eval.embedder import EmbeddingCache, Vector
from gateway.eval.identify import folder_per_person

log = logging.getLogger(__name__)

DECIMALS = 4


@dataclass(frozen=True)
class Calibration:
    target_fmr: float
    threshold: float
    n_genuine: int
    n_impostor: int
    false_matches: int
    fmr: float
    fmr_ci95: tuple[float, float]
    rule_of_three: float | None
    fnmr: float
    fnmr_ci95: tuple[float, float]
    target_measurable: bool
    note: str
    margin: float | None = None
    margin_note: str = ""
    failed_images: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def describe(self) -> str:
        lines = [
            f"target FMR: {self.target_fmr:g}",
            (
                f"comparisons: {self.n_genuine} genuine, {self.n_impostor} impostor "
                f"({self.failed_images} images without a usable face left out)"
            ),
            f"match_threshold = {self.threshold:.{DECIMALS}f}",
            (
                f"  false matches at it: {self.false_matches} of {self.n_impostor} "
                f"(FMR {self.fmr:.2e}), Clopper-Pearson 95% interval "
                f"[{self.fmr_ci95[0]:.2e}, {self.fmr_ci95[1]:.2e}]"
            ),
        ]
        if self.rule_of_three is not None:
            lines.append(
                f"  rule of 3 (no false match seen): FMR <= {self.rule_of_three:.2e} (95%)"
            )
        lines.append(
            f"  FNMR at it: {self.fnmr:.4f}, 95% interval "
            f"[{self.fnmr_ci95[0]:.4f}, {self.fnmr_ci95[1]:.4f}]"
        )
        if self.note:
            lines.append(f"  NOTE: {self.note}")
        if self.margin is None:
            lines.append(f"match_margin: not estimated ({self.margin_note})")
        else:
            lines.append(f"match_margin = {self.margin:.{DECIMALS}f} ({self.margin_note})")
        return "\n".join(lines)


def calibrate_scores(
    genuine: npt.ArrayLike, impostor: npt.ArrayLike, target_fmr: float, confidence: float = 0.95
) -> Calibration:
    """Threshold (rounded UP to 4 decimals) with FMR <= target on ``impostor``, plus bounds."""
    gen = np.asarray(genuine, dtype=np.float64).ravel()
    imp = np.asarray(impostor, dtype=np.float64).ravel()
    if imp.size == 0:
        raise ValueError("calibration needs impostor comparisons (two or more people)")
    if gen.size == 0:
        raise ValueError("calibration needs genuine comparisons (a person with two images)")
    raw = metrics.threshold_for_fmr(imp, target_fmr)
    scale = 10**DECIMALS
    thr = math.ceil(raw * scale) / scale
    k = int(np.sum(imp >= thr))
    fmr_ci = metrics.clopper_pearson(k, int(imp.size), confidence)
    misses = int(np.sum(gen < thr))
    fnmr_ci = metrics.clopper_pearson(misses, int(gen.size), confidence)
    reason = metrics.not_measurable_reason(int(imp.size), target_fmr, "impostor comparisons")
    note = ""
    if reason is not None:
        note = (
            f"target FMR {target_fmr:g} is {reason}: the threshold sits above every impostor "
            f"score and the data only bounds FMR below {fmr_ci[1]:.2e}; collect more people"
        )
    elif fmr_ci[1] > target_fmr:
        note = (
            f"the 95% upper bound {fmr_ci[1]:.2e} exceeds the target {target_fmr:g}: "
            "more impostor comparisons would be needed to guarantee it"
        )
    return Calibration(
        target_fmr=target_fmr,
        threshold=thr,
        n_genuine=int(gen.size),
        n_impostor=int(imp.size),
        false_matches=k,
        fmr=k / imp.size,
        fmr_ci95=fmr_ci,
        rule_of_three=metrics.rule_of_three(int(imp.size)) if k == 0 else None,
        fnmr=misses / gen.size,
        fnmr_ci95=fnmr_ci,
        target_measurable=reason is None,
        note=note,
    )


def choose_margin(
    mated_top: npt.ArrayLike,
    mated_hit: npt.ArrayLike,
    mated_margin: npt.ArrayLike,
    threshold: float,
    max_loss: float = 0.01,
) -> tuple[float, int]:
    """Largest runner-up margin rejecting at most ``max_loss`` of the correct accepts.

    Correct accepts: mated searches whose rank-1 is the mate with score >= ``threshold``.
    Returns (margin rounded down to 4 decimals, number of correct accepts it was read from).
    """
    top = np.asarray(mated_top, dtype=np.float64)
    hit = np.asarray(mated_hit, dtype=bool)
    marg = np.asarray(mated_margin, dtype=np.float64)
    good = marg[hit & (top >= threshold)]
    good = good[np.isfinite(good)]
    if good.size == 0:
        return 0.0, 0
    lost = math.floor(max_loss * good.size + 1e-9)
    value = float(np.sort(good)[lost])  # margins strictly below it are rejected: <= lost
    scale = 10**DECIMALS
    return max(0.0, math.floor(value * scale) / scale), int(good.size)


def pair_scores_from_vectors(
    people: Mapping[str, list[Vector]],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Every genuine and impostor cosine score among ``{person: [embeddings]}``."""
    vecs: list[Vector] = []
    owner: list[int] = []
    for i, person in enumerate(sorted(people)):
        vecs.extend(people[person])
        owner.extend([i] * len(people[person]))
    if len(vecs) < 2:
        raise ValueError("need at least two embedded images")
    mat = np.stack(vecs).astype(np.float32)
    own = np.asarray(owner)
    sims = mat @ mat.T
    iu, ju = np.triu_indices(len(vecs), k=1)
    same = own[iu] == own[ju]
    vals = sims[iu, ju]
    return vals[same], vals[~same]


def folder_data(root: Path, cache: EmbeddingCache) -> tuple[dict[str, list[Vector]], int]:
    """Embeddings per person of a folder-per-person directory, and the failed-image count."""
    people: dict[str, list[Vector]] = {}
    failed = 0
    for person, paths in folder_per_person(root).items():
        for p in paths:
            emb = cache.get(p)
            if emb.vector is None:
                failed += 1
            else:
                people.setdefault(person, []).append(emb.vector)
    return people, failed


def leave_one_out(
    people: Mapping[str, list[Vector]],
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    """Each image searched against all others: (top score, rank-1 is mate, top-second margin).

    Only searches whose person has another image (mated) are returned.
    """
    names = sorted(people)
    vecs = [v for n in names for v in people[n]]
    owner = np.asarray([i for i, n in enumerate(names) for _ in people[n]])
    mat = np.stack(vecs).astype(np.float32)
    sims = mat @ mat.T
    np.fill_diagonal(sims, -np.inf)
    per_person = np.full((len(vecs), len(names)), -np.inf, dtype=np.float32)
    for i in range(len(names)):
        per_person[:, i] = sims[:, owner == i].max(axis=1)
    mated = np.isfinite(per_person[np.arange(len(vecs)), owner])
    order = -np.sort(-per_person, axis=1)
    top = order[:, 0].astype(np.float64)
    second = order[:, 1].astype(np.float64) if len(names) > 1 else np.full(len(vecs), -np.inf)
    hit = np.argmax(per_person, axis=1) == owner
    return top[mated], hit[mated], (top - second)[mated]


_SECTION = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_ANY_TABLE = re.compile(r"^\s*\[")


def _key_line(key: str) -> re.Pattern[str]:
    return re.compile(rf"^(\s*{re.escape(key)}\s*=\s*)([^#\r\n]*?)(\s*(#.*)?)(\r?\n?)$")


def write_face_thresholds(path: Path, threshold: float, margin: float | None) -> str:
    """Set ``[face] match_threshold`` (and ``match_margin``) in a TOML file, keeping its text.

    Only the value on those lines changes (comments and layout kept); a missing key is added
    at the end of ``[face]``, a missing ``[face]`` table at the end of the file. The result is
    re-read with tomllib and must hold the new values, else nothing is written.
    """
    try:
        original = path.read_text(encoding="utf-8") if path.exists() else ""
        tomllib.loads(original)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError([(str(path), "", f"cannot read as TOML: {exc}")]) from exc
    values: dict[str, float] = {"match_threshold": threshold}
    if margin is not None:
        values["match_margin"] = margin
    lines = original.splitlines(keepends=True)
    start = end = None
    for i, line in enumerate(lines):
        m = _SECTION.match(line)
        if start is None and m and m.group(1) == "face":
            start = i
        elif start is not None and _ANY_TABLE.match(line):
            end = i
            break
    newline = "\r\n" if original.endswith("\r\n") else "\n"
    if start is None:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += newline
        block = ([newline] if lines else []) + [f"[face]{newline}"]
        block += [f"{k} = {v:.{DECIMALS}f}{newline}" for k, v in values.items()]
        lines.extend(block)
    else:
        end = len(lines) if end is None else end
        for key, value in values.items():
            pattern = _key_line(key)
            for i in range(start + 1, end):
                m = pattern.match(lines[i])
                if m:
                    lines[i] = f"{m.group(1)}{value:.{DECIMALS}f}{m.group(3)}{m.group(5)}"
                    break
            else:
                last = end
                while last - 1 > start and not lines[last - 1].strip():
                    last -= 1
                if not lines[last - 1].endswith("\n"):
                    lines[last - 1] += newline
                lines.insert(last, f"{key} = {value:.{DECIMALS}f}{newline}")
                end += 1
    text = "".join(lines)
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            [(str(path), "", f"edit would break the TOML ({exc}); not written")]
        ) from exc
    face = parsed.get("face")
    for key, value in values.items():
        got = face.get(key) if isinstance(face, dict) else None
        if not isinstance(got, float) or abs(got - round(value, DECIMALS)) > 1e-12:
            raise ConfigError(
                [
                    (
                        f"face.{key}",
                        str(got),
                        (
                            "cannot be edited in place (defined in an unusual "
                            "way, e.g. an inline table or dotted key); not written"
                        ),
                    )
                ]
            )
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    log.info("calibrate: wrote face.match_threshold=%.4f margin=%s to %s", threshold, margin, path)
    return text
